"""`lmforge VERB …`: each verb maps to one recipe. User mistakes print one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from lmforge import __version__
from lmforge.errors import LmforgeError

EXIT_USER_ERROR = 2


def cmd_train(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.errors import ConfigError
    from lmforge.recipes.finetune import finetune
    from lmforge.recipes.schema import RunConfig

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its saved config; give no config file or overrides")
        finetune(None, resume_dir=Path(args.resume))  # type: ignore[arg-type]
        return
    if not args.config:
        raise ConfigError("give a config file (lmforge train CONFIG.yaml [key=value …]) or --resume RUN_DIR")
    config_path, overrides = _split_config_and_overrides(args.config, args.overrides)
    raw = load_config(config_path, overrides)
    if "search" in raw.data:
        raise ConfigError(f"{config_path} has a search: section; run it with `lmforge search {config_path}`, "
                          "or remove the section to train once")
    finetune(validate_config(RunConfig, raw))


def _split_config_and_overrides(first: str, rest: list[str]) -> tuple[str | None, list[str]]:
    """`lmforge train a=b` (no file) is allowed: then every argument is an override."""
    if "=" in first and not Path(first).exists():
        return None, [first, *rest]
    return first, rest


def cmd_search(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.recipes.search import search

    out = search(load_config(args.config, args.overrides))
    print(f"lmforge: search done; results in {out / 'results.md'}, best trial in {out / 'best.json'}")


def cmd_augment(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.recipes.augment import augment
    from lmforge.recipes.schema import RunConfig

    config = validate_config(RunConfig, load_config(args.config, args.overrides))
    augment(config, args.method, args.via or [], Path(args.output), args.copies, args.rate, args.batch_size)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.errors import ConfigError
    from lmforge.recipes.evaluate import evaluate, evaluate_pretrained
    from lmforge.recipes.schema import RunConfig

    target = Path(args.target)
    if target.suffix.lower() in (".yaml", ".yml"):
        if args.perturbed:
            raise ConfigError("--perturbed applies to a trained run directory, not a config file")
        overrides = args.overrides + ([f"train.output_dir={args.output}"] if args.output else [])
        evaluate_pretrained(validate_config(RunConfig, load_config(str(target), overrides)), args.data)
        return
    if args.overrides or args.output:
        raise ConfigError("overrides and --output apply to a config file; a run directory is evaluated as it was trained")
    evaluate(target, args.data, perturbed=args.perturbed, adapter=args.adapter)


def cmd_predict(args: argparse.Namespace) -> None:
    from lmforge.recipes.predict import predict

    if args.output in (None, "-"):
        count = predict(Path(args.run_dir), args.input, sys.stdout, args.adapter)
    else:
        target = Path(args.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                count = predict(Path(args.run_dir), args.input, handle, args.adapter)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        print(f"lmforge: wrote {count} predictions to {target}", file=sys.stderr)


def cmd_adapters(args: argparse.Namespace) -> None:
    from lmforge.recipes.adapters import adapter_names, add_adapter

    if args.action == "add":
        if not args.other_run:
            from lmforge.errors import ConfigError

            raise ConfigError("lmforge adapters add RUN_DIR OTHER_RUN_DIR [--name NAME]: give the run to take the adapter from")
        name = add_adapter(Path(args.run_dir), Path(args.other_run), args.name)
        print(f"lmforge: added adapter {name} to {args.run_dir}; use it with --adapter {name}")
    else:
        names = adapter_names(Path(args.run_dir))
        print("\n".join(f"{n}{'  (own)' if i == 0 else ''}" for i, n in enumerate(names)))


def cmd_export(args: argparse.Namespace) -> None:
    from lmforge.recipes.export import export

    folder = export(Path(args.run_dir), Path(args.output))
    print(f"lmforge: exported a plain Hugging Face model to {folder}")


def cmd_models(args: argparse.Namespace) -> None:
    from lmforge.recipes.models import list_models

    for row in list_models():
        print(f"{row['alias']:<24} {row['status']:<44} {row['description']}")


def cmd_demo(args: argparse.Namespace) -> None:
    from lmforge.recipes.demo import demo

    demo(args.overrides)


VERBS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
    "train": (cmd_train, "fine-tune a model from a YAML config (key=value overrides any field)"),
    "search": (cmd_search, "hyper-parameter search with Optuna (grid, random, TPE; pruning); each trial is a run"),
    "augment": (cmd_augment, "write augmented training rows (EDA, paraphrase, back-translation) to their own file"),
    "evaluate": (cmd_evaluate, "score a trained run (or a config's model before training) on a labelled split or file"),
    "predict": (cmd_predict, "label texts with a trained run (jsonl out)"),
    "adapters": (cmd_adapters, "keep several PEFT adapters side by side in one run (add, list); pick one with --adapter"),
    "export": (cmd_export, "save a run's model as a plain Hugging Face folder (LoRA/DoRA/IA3 adapters merged)"),
    "models": (cmd_models, "list the packaged models that work offline"),
    "demo": (cmd_demo, "fine-tune MiniLM on chatterbot-corpus topics (the embedded default)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="Adapt pretrained language models to real tasks — offline.")
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in VERBS.items():
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        if name == "train":
            sub.add_argument("config", nargs="?", help="YAML config file (see examples/)")
            sub.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-5 data.max_length=64")
            sub.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
        elif name == "search":
            sub.add_argument("config", help="a run config with a `search:` section (space of dotted keys, sampler, "
                                            "trials); see examples/search_sst2.yaml")
            sub.add_argument("overrides", nargs="*", help="section.key=value, e.g. search.trials=20 search.sampler=random")
        elif name == "augment":
            sub.add_argument("config", help="the run config whose training split is augmented")
            sub.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.max_train_samples=500")
            sub.add_argument("--method", required=True, choices=["eda", "paraphrase", "back-translation"])
            sub.add_argument("--via", action="append", metavar="RUN_DIR|CONFIG.yaml",
                             help="a generation model: a trained run or a generation config (paraphrase: one; "
                                  "back-translation: two, in order, e.g. en→fr then fr→en)")
            sub.add_argument("--output", required=True, metavar="FILE", help="new .jsonl file for the augmented rows")
            sub.add_argument("--copies", type=int, default=1, help="augmented rows per training row (default 1)")
            sub.add_argument("--rate", type=float, default=0.1, help="eda: share of words each edit touches")
            sub.add_argument("--batch-size", type=int, default=32, help="generation batch size")
        elif name == "evaluate":
            sub.add_argument("target", metavar="RUN_DIR|CONFIG.yaml",
                             help="a run directory made by `lmforge train`, or a config whose model is scored untrained "
                                  "(the 'before' of a before/after comparison)")
            sub.add_argument("overrides", nargs="*", help="with a config: section.key=value overrides")
            sub.add_argument("--data", metavar="FILE", help="labelled file (.jsonl/.csv/.tsv); default the test split "
                                                            "(else validation)")
            sub.add_argument("--output", metavar="DIR", help="with a config: the new folder for the report "
                                                             "(default train.output_dir, else runs/<task>-<time>)")
            sub.add_argument("--perturbed", action="store_true", help="also score a copy with typos and word swaps "
                                                                      "(robustness; text classification)")
            sub.add_argument("--adapter", metavar="NAME", help="a PEFT run: the adapter to use (see `lmforge adapters list`)")
        elif name == "predict":
            sub.add_argument("run_dir", help="a run directory made by `lmforge train`")
            sub.add_argument("--input", required=True, metavar="FILE|-", help="texts: .jsonl/.csv/.tsv/.txt, or - for stdin "
                             "(one JSON object or plain text per line)")
            sub.add_argument("--output", metavar="FILE", help="where to write jsonl (default stdout)")
            sub.add_argument("--adapter", metavar="NAME", help="a PEFT run: the adapter to use (see `lmforge adapters list`)")
        elif name == "adapters":
            sub.add_argument("action", choices=["add", "list"], help="add: copy OTHER_RUN's adapter beside RUN_DIR's; "
                                                                     "list: the run's adapters")
            sub.add_argument("run_dir", help="a PEFT run directory")
            sub.add_argument("other_run", nargs="?", help="add: the PEFT run (same base, task and labels) to take from")
            sub.add_argument("--name", help="add: the name to use (default the other run's folder name)")
        elif name == "export":
            sub.add_argument("run_dir", help="a run directory made by `lmforge train`")
            sub.add_argument("--output", required=True, metavar="DIR", help="new folder for the model (must not exist "
                                                                            "or be empty)")
        elif name == "demo":
            sub.add_argument("overrides", nargs="*", help="section.key=value overrides of the demo config")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return EXIT_USER_ERROR
    _quiet_libraries()
    try:
        VERBS[args.verb][0](args)
    except LmforgeError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _quiet_libraries() -> None:
    """Keep library chatter (download hints, load reports) out of the way of lmforge's own output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
