"""`lmforge VERB …`: each verb maps to one recipe. User mistakes print one line and exit 2."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lmforge import __version__
from lmforge.errors import LmforgeError

EXIT_USER_ERROR = 2
EXIT_TERMINATED = 128 + 15  # as a shell reports a process SIGTERM ended


def cmd_train(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.errors import ConfigError
    from lmforge.recipes.finetune import finetune
    from lmforge.runs.schema import RunConfig

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("--resume continues a run with its saved config; give no config file or overrides")
        finetune(None, resume_dir=Path(args.resume))  # type: ignore[arg-type]
        return
    if not args.config:
        raise ConfigError("give a config file (lmforge train CONFIG.yaml [key=value …]) or --resume RUN_DIR")
    config_path, overrides = _split_config_and_overrides(args.config, args.overrides)
    raw = load_config(config_path, overrides + _device_override(args))
    if "search" in raw.data:
        raise ConfigError(f"{config_path} has a search: section; run it with `lmforge search {config_path}`, "
                          "or remove the section to train once")
    finetune(validate_config(RunConfig, raw))


def _device_override(args: argparse.Namespace) -> list[str]:
    """--device on a verb that reads a config: the model.device override."""
    return [f"model.device={args.device}"] if getattr(args, "device", None) else []


def _split_config_and_overrides(first: str, rest: list[str]) -> tuple[str | None, list[str]]:
    """`lmforge train a=b` (no file) is allowed: then every argument is an override."""
    if "=" in first and not Path(first).exists():
        return None, [first, *rest]
    return first, rest


def cmd_search(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.errors import ConfigError
    from lmforge.packages import require

    require("optuna", "search", "lmforge search")
    from lmforge.recipes.search import search

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("--resume continues a search with its saved config; give no config file or overrides")
        out = search(None, Path(args.resume))
    elif not args.config:
        raise ConfigError("give a search config (lmforge search CONFIG.yaml [key=value …]) or --resume SEARCH_DIR")
    else:
        out = search(load_config(args.config, args.overrides))
    print(f"lmforge: search done; results in {out / 'results.md'}, best trial in {out / 'best.json'}")


def cmd_augment(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.recipes.augment import augment
    from lmforge.runs.schema import RunConfig

    config = validate_config(RunConfig, load_config(args.config, args.overrides + _device_override(args)))
    augment(config, args.method, args.via or [], Path(args.output), args.copies, args.rate, args.batch_size)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from lmforge.config.loader import load_config
    from lmforge.config.validate import validate_config
    from lmforge.errors import ConfigError
    from lmforge.recipes.evaluate import evaluate, evaluate_pretrained
    from lmforge.runs.schema import RunConfig

    target = Path(args.target)
    if target.suffix.lower() in (".yaml", ".yml"):
        if args.perturbed:
            raise ConfigError("--perturbed applies to a trained run directory, not a config file")
        overrides = args.overrides + ([f"train.output_dir={args.output}"] if args.output else []) + _device_override(args)
        evaluate_pretrained(validate_config(RunConfig, load_config(str(target), overrides)), args.data)
        return
    if args.output:
        raise ConfigError("--output applies to a config file; a run directory keeps its evaluations in RUN/evaluations/")
    evaluate(target, args.data, perturbed=args.perturbed, adapter=args.adapter, device=args.device,
             data_overrides=args.overrides)


def _check_output_file(target: Path | str | None) -> None:
    """--output must be a file path (checked before any model loads)."""
    from lmforge.errors import ConfigError
    from lmforge.files import file_in_the_way

    if target in (None, "-"):
        return
    if Path(target).is_dir():
        raise ConfigError(f"--output {target} is a folder; give a file path such as {Path(target) / 'out.jsonl'}")
    under = file_in_the_way(Path(target).parent)
    if under is not None:
        raise ConfigError(f"--output {target} lies under {under}, which is a file; give a path in a folder")


def cmd_predict(args: argparse.Namespace) -> None:
    from lmforge.recipes.predict import predict

    _check_output_file(args.output)
    if args.output in (None, "-"):
        predict(Path(args.run_dir), args.input, sys.stdout, args.adapter, args.device, args.overrides)
    else:
        count = _write_atomically(Path(args.output), lambda handle: predict(Path(args.run_dir), args.input, handle,
                                                                            args.adapter, args.device, args.overrides))
        print(f"lmforge: wrote {count} predictions to {args.output}", file=sys.stderr)


def _write_atomically(target: Path, write: Callable[[Any], int]) -> int:
    """Run `write(handle)` into a temporary file beside `target`, then rename it into place."""
    from lmforge.files import atomic_write_with

    def fill(tmp: str) -> int:
        with open(tmp, "w", encoding="utf-8") as handle:
            return write(handle)
    return atomic_write_with(target, fill)


def cmd_generate(args: argparse.Namespace) -> None:
    import json

    from lmforge.decode.params import DecodeParams
    from lmforge.decode.stream import stream_text
    from lmforge.errors import ConfigError
    from lmforge.recipes import generate as recipe

    _check_output_file(args.output)
    texts = recipe.read_prompts(args.prompt or [], args.input, args.source_column)
    generator = recipe.open_generator(args.target, args.system, args.chat_template, args.max_new_tokens, args.stop,
                                      args.precision, args.device, args.allow_network)
    flags = {name: getattr(args, name) for name in DecodeParams.model_fields}
    flags["logit_bias"] = _logit_bias(args.logit_bias)
    if args.compare:
        rows = recipe.compare(generator, texts, args.compare.split(","), args.seed or 0, args.batch_size)
        print(recipe.compare_table(texts, rows))
        if args.output:
            _write_atomically(Path(args.output), lambda h: sum(h.write(json.dumps(r, ensure_ascii=False) + "\n") > 0 for r in rows))
        return
    params = recipe.decode_params(generator.decode, flags)
    if args.stream:
        if len(texts) != 1:
            raise ConfigError("--stream follows one prompt; give exactly one --prompt")
        for piece in stream_text(generator.model, generator.tokenizer, generator.prompt_ids(texts)[0], params,
                                 generator.max_new_tokens, generator.stop_strings, generator.precision):
            print(piece, end="", flush=True)
        print()
        return
    images = recipe.read_prompt_images(args.image or [], args.input, args.image_column, len(texts))
    outputs = generator.run(texts, params, args.batch_size, images)
    if args.input or args.output:
        records = [{"prompt": t, "generated": generator.task.text(c[0].tokens), "score": c[0].score} | c[0].decision_fields()
                   | ({"candidates": [generator.task.text(x.tokens) for x in c]} if len(c) > 1 else {})
                   for t, c in zip(texts, outputs, strict=True)]
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
        if args.output:
            count = _write_atomically(Path(args.output), lambda h: sum(h.write(line) > 0 for line in lines))
            print(f"lmforge: wrote {count} outputs to {args.output}", file=sys.stderr)
        else:
            sys.stdout.writelines(lines)
        return
    for n, (text, candidates) in enumerate(zip(texts, outputs, strict=True)):
        if len(texts) > 1:
            print(f"### {n + 1}: {text}")
        decided = candidates[0].decision_fields()
        if "image_relevance" in decided:
            print(f"(image {'used' if decided['image_relevant'] else 'not used'}: gate probability "
                  f"{decided['image_relevance']:.3f})")
        if "arm" in decided:
            print(f"(strategy auto chose {decided['arm']})")
        for rank, candidate in enumerate(candidates, start=1):
            prefix = f"[{rank}] " if len(candidates) > 1 else ""
            print(prefix + generator.task.text(candidate.tokens))
            if candidate.steps:
                print(recipe.explain_table(generator.tokenizer, candidate))


def _logit_bias(pairs: list[str] | None) -> dict[int, float]:
    from lmforge.errors import ConfigError

    bias = {}
    for pair in pairs or []:
        token, _, value = pair.partition("=")
        try:
            bias[int(token)] = float(value)
        except ValueError:
            raise ConfigError(f"--logit-bias {pair}: write TOKEN_ID=BIAS, e.g. --logit-bias 42=-100") from None
    return bias


def _add_decode_flags(sub: argparse.ArgumentParser) -> None:
    """One flag per `decode:` field (decode.num_beams is --num-beams), described by the field itself."""
    from typing import Literal, get_args, get_origin

    from lmforge.decode.params import DecodeParams

    group = sub.add_argument_group("decoding (the task.decode fields; a run's own settings are the defaults)")
    for name, field in DecodeParams.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name == "logit_bias":
            group.add_argument(flag, action="append", metavar="TOKEN_ID=BIAS", help=field.description + " Repeatable.")
        elif field.annotation == list[str]:
            group.add_argument(flag, action="append", metavar="TEXT", help=field.description + " Repeatable.")
        elif get_origin(field.annotation) is Literal:
            group.add_argument(flag, choices=list(get_args(field.annotation)), help=field.description)
        elif name == "early_stopping":
            group.add_argument(flag, choices=["true", "false", "never"], help=field.description)
        elif field.annotation is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=field.description)
        else:
            kind = {int: int, int | None: int, str: str, str | None: str}.get(field.annotation, float)
            group.add_argument(flag, type=kind, help=field.description)


def _add_limit_flags(sub: argparse.ArgumentParser) -> None:
    """One flag per `RequestLimits` field (max_beams is --max-beams): what one request may cost."""
    import dataclasses

    from lmforge.cli_flags import checked
    from lmforge.serve.limits import RequestLimits

    group = sub.add_argument_group("per-request limits (a request over one gets a 400 naming it; model files are "
                                   "named here, never in a request)")
    for field in dataclasses.fields(RequestLimits):
        flag, text = "--" + field.name.replace("_", "-"), field.metadata["help"]
        if isinstance(field.default, bool):
            group.add_argument(flag, action="store_true", help=text)
        elif field.default is None:
            group.add_argument(flag, metavar=field.name.split("_")[-1].upper(), help=text)
        else:
            group.add_argument(flag, type=checked(int, gt=0), default=field.default, help=f"{text} (default {field.default})")


class _Parser(argparse.ArgumentParser):
    """Mistakes on the command line are one `error:` line naming the verb and where its help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def cmd_adapters(args: argparse.Namespace) -> None:
    from lmforge.runs.adapters import adapter_names, add_adapter

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

    written, check = export(args.run_dir, Path(args.output), args.format, args.outtype, args.converter)
    what = {"hf": "a plain Hugging Face model", "gguf": f"a GGUF file ({args.outtype})", "onnx": "an ONNX graph"}
    print(f"lmforge: exported {what[args.format]} to {written}" + (f"; {check}" if check else ""))


def cmd_models(args: argparse.Namespace) -> None:
    from lmforge.recipes.models import list_models

    for row in list_models():
        print(f"{row['alias']:<24} {row['status']:<44} {row['description']}")


def cmd_gate(args: argparse.Namespace) -> None:
    from lmforge.recipes.gate import fit_gate_file

    report = fit_gate_file(args.data, args.output, args.scorer, args.threshold, args.shuffled, args.seed)
    print(f"lmforge: gate fitted on {report['pairs']} pairs ({report['relevant']} relevant) over {report['images']} "
          f"images; accuracy {report['accuracy']:.3f}, leave-one-image-out {report['leave_one_image_out_accuracy']:.3f}; "
          f"saved to {args.output}")


def cmd_policy(args: argparse.Namespace) -> None:
    from lmforge.recipes.policy import fit_policy_run, report_table

    report = fit_policy_run(args.target, args.data, args.output, args.arms, args.reward, args.cost_weight, args.layer,
                            args.length, args.max_new_tokens, args.limit, args.resume, args.seed, device=args.device)
    print(report_table(report))
    print(f"lmforge: policy fitted on {report['rows']} rows (best fixed arm: {report['best_fixed_arm']}); saved to "
          f"{args.output} — decode with --strategy auto --policy {args.output}")


def cmd_serve(args: argparse.Namespace) -> None:
    import dataclasses

    from lmforge.packages import require

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "serve", "lmforge serve")
    from lmforge.recipes.serve import FaqSettings, serve
    from lmforge.serve.limits import RequestLimits
    from lmforge.serve.served import ServeOptions

    limits = RequestLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RequestLimits)})
    options = ServeOptions(api_key=args.api_key, max_queue=args.max_queue, max_batch=args.max_batch,
                           request_timeout_s=args.timeout, max_body_bytes=args.max_body_bytes,
                           public_metrics=args.public_metrics, wave_wait_s=args.wave_wait,
                           stall_after_s=args.stall_after, limits=limits)
    faq = FaqSettings(args.faq, args.faq_encoder, args.faq_top_k, args.faq_min_score) if args.faq else None
    serve(args.target, args.host, args.port, args.served_model_name, options, faq, args.weights, args.device,
          args.allow_network, args.engine, args.chat_template, args.adapter or [])


def cmd_monitor(args: argparse.Namespace) -> None:
    from lmforge.recipes.monitor import monitor

    watcher = monitor(args.run_dir, args.input, args.window, args.threshold, args.min_count, args.negative_label,
                      args.recover_below, args.alerts, args.plot, args.predictions, args.batch_size, device=args.device)
    seen = sum(len(points) for points in watcher.trend.values())
    raised = sum(a["event"] == "alert" for a in watcher.alerts)
    print(f"lmforge: {seen} texts over {len(watcher.trend)} topics, {raised} alerts"
          + (f"; trend plot {args.plot}" if args.plot and watcher.trend else ""), file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> None:
    from lmforge.recipes.demo import demo

    demo(args.overrides)


VERBS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
    "train": (cmd_train, "fine-tune a model from a YAML config (key=value overrides any field)"),
    "search": (cmd_search, "hyper-parameter search with Optuna (grid, random, TPE; pruning); each trial is a run"),
    "augment": (cmd_augment, "write augmented training rows (EDA, paraphrase, back-translation) to their own file"),
    "evaluate": (cmd_evaluate, "score a trained run (or a config's model before training) on a labelled split or file"),
    "predict": (cmd_predict, "label texts with a trained run (jsonl out)"),
    "generate": (cmd_generate, "decode prompts with a model or generation run: greedy, beam, sampling; --stream, "
                               "--explain, --compare strategies side by side"),
    "adapters": (cmd_adapters, "keep several PEFT adapters side by side in one run (add, list); pick one with --adapter"),
    "export": (cmd_export, "save a run's model for deployment: a Hugging Face folder (adapters merged), GGUF or ONNX"),
    "gate": (cmd_gate, "fit the visual-relevance gate on image-text pairs (decode.image_gate uses it)"),
    "policy": (cmd_policy, "fit a learned decoding policy: every arm (greedy, beam4, …) decoded and rewarded on "
                           "labelled prompts, then strategy auto picks per prompt (--strategy auto --policy DIR)"),
    "serve": (cmd_serve, "serve a model or run over HTTP: OpenAI-compatible completions/chat with continuous "
                         "batching, or a task run's /v1/classify|ner|qa|score; playground at /"),
    "monitor": (cmd_monitor, "classify a stream of texts and alert when a topic's negative rate crosses a threshold"),
    "models": (cmd_models, "list the packaged models that work offline"),
    "demo": (cmd_demo, "fine-tune MiniLM on chatterbot-corpus topics (the embedded default)"),
}


#: what a verb's --help says after its arguments
EPILOGS = {
    "train": "How long a run lasts: train.epochs passes over the data; train.max_steps=N stops after N optimizer steps "
             "and train.patience=K after K evaluations without improvement, whichever comes first (progress lines show "
             "the run's ETA). Ctrl-C or SIGTERM stop it cleanly (exit 130 / 143) and --resume RUN_DIR continues from "
             "the last checkpoint (train.save_every_steps / save_every_minutes set how often one is written).",
}


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per verb, its arguments derived from its params model (`cli_params.VERB_ARGS`)."""
    from lmforge.cli_flags import add_flags
    from lmforge.cli_params import VERB_ARGS

    parser = _Parser(prog="lmforge", description="Adapt pretrained language models to real tasks — offline.")
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in VERBS.items():
        sub = verbs.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS.get(name))
        add_flags(sub, VERB_ARGS[name])
        if name == "generate":
            _add_decode_flags(sub)
        elif name == "serve":
            _add_limit_flags(sub)
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


def overrides_last(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` reordered as verb, positionals, `key=value` overrides, then options, so overrides may stand
    anywhere (`lmforge evaluate CFG --output DIR data.max_eval_samples=16`); an option keeps its value."""
    if not argv or argv[0] not in VERBS:
        return argv
    verb = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
    if not any(action.dest == "overrides" for action in verb._actions):
        return argv
    takes_value = {flag for action in verb._actions if action.option_strings and action.nargs != 0
                   for flag in action.option_strings}
    positionals, overrides, options, rest = [], [], [], iter(argv[1:])
    for token in rest:
        if token in takes_value:
            options += [token, next(rest, "")]
        elif token.startswith("-"):
            options.append(token)
        elif OVERRIDE.match(token):
            overrides.append(token)
        else:
            positionals.append(token)
    return [argv[0], *positionals, *overrides, *options]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(overrides_last(parser, list(sys.argv[1:] if argv is None else argv)))
    if not args.verb:
        parser.print_help()
        return EXIT_USER_ERROR
    _quiet_libraries()
    previous = _stop_on_sigterm()
    try:
        VERBS[args.verb][0](args)
    except LmforgeError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("terminated (SIGTERM); a training run continues with --resume", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, systemd, Kubernetes), handled as Ctrl-C is: writes in progress are abandoned
    cleanly (staging files removed), the last complete checkpoint stands."""


def _stop_on_sigterm():
    """Make SIGTERM raise `Terminated` in the main thread; the handler it replaces (None off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handle(signum, frame) -> None:
        raise Terminated()
    return signal.signal(signal.SIGTERM, handle)


def _quiet_libraries() -> None:
    """Keep library chatter (download hints, load reports) out of the way of lmforge's own output."""
    import logging as python_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    # bitsandbytes says at import that its optional hub-downloaded CPU kernel is absent (it never downloads offline)
    python_logging.getLogger("bitsandbytes").setLevel(python_logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
