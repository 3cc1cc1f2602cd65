"""`lmforge VERB …`: each verb maps to one recipe. User mistakes print one line and exit 2."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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
    from lmforge.recipes.schema import RunConfig

    config = validate_config(RunConfig, load_config(args.config, args.overrides + _device_override(args)))
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

    if target not in (None, "-") and Path(target).is_dir():
        raise ConfigError(f"--output {target} is a folder; give a file path such as {Path(target) / 'out.jsonl'}")


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
            group.add_argument(flag, type=_positive_int, default=field.default, help=f"{text} (default {field.default})")


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of at least 1, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"give a number above 0, not {text!r}")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"give a port from 1 to 65535, not {text!r}")
    return int(text)


class _Parser(argparse.ArgumentParser):
    """Mistakes on the command line are one `error:` line naming the verb and where its help is, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


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
    from lmforge.serve.app import ServeOptions
    from lmforge.serve.limits import RequestLimits

    limits = RequestLimits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RequestLimits)})
    options = ServeOptions(api_key=args.api_key, max_queue=args.max_queue, max_batch=args.max_batch,
                           request_timeout_s=args.timeout, max_body_bytes=args.max_body_bytes,
                           public_metrics=args.public_metrics, wave_wait_s=args.wave_wait, limits=limits)
    faq = FaqSettings(args.faq, args.faq_encoder, args.faq_top_k, args.faq_min_score) if args.faq else None
    serve(args.target, args.host, args.port, args.served_model_name, options, faq, args.weights, args.device,
          args.allow_network)


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


RUNS_A_MODEL = ("train", "augment", "evaluate", "predict", "generate", "policy", "serve", "monitor")


def _device(text: str) -> str:
    """--device: a device name that is present here (checked before any model loads)."""
    from lmforge.models.device import DEVICE_HELP, DEVICE_PATTERN, resolve_device

    if not re.match(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r}: choose {DEVICE_HELP}")
    try:
        resolve_device(text)
    except LmforgeError as error:
        raise argparse.ArgumentTypeError(str(error).partition(": ")[2]) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmforge", description="Adapt pretrained language models to real tasks — offline.")
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (_, help_text) in VERBS.items():
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        if name in ("generate", "serve"):
            sub.add_argument("--allow-network", action="store_true", help="a hub id may be downloaded (once; cached "
                                                                          "for offline use afterwards)")
        if name in RUNS_A_MODEL:
            sub.add_argument("--device", type=_device, metavar="DEVICE",
                             help="where the model runs: auto (CUDA, then MPS, else CPU; the default), cpu, cuda, cuda:N, "
                                  "mps" + (" (model.device)" if name in ("train", "augment", "evaluate") else ""))
        if name == "train":
            sub.add_argument("config", nargs="?", help="YAML config file (see examples/)")
            sub.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=3e-5 data.max_length=64")
            sub.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
        elif name == "search":
            sub.add_argument("config", nargs="?", help="a run config with a `search:` section (space of dotted keys, "
                                                       "sampler, trials, storage, workers); see examples/search_sst2.yaml")
            sub.add_argument("overrides", nargs="*", help="section.key=value, e.g. search.trials=20 search.sampler=random")
            sub.add_argument("--resume", metavar="SEARCH_DIR", help="continue a killed search from its study.db without "
                                                                   "repeating finished trials")
        elif name == "augment":
            sub.add_argument("config", help="the run config whose training split is augmented")
            sub.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.max_train_samples=500")
            sub.add_argument("--method", required=True, choices=["eda", "paraphrase", "back-translation"])
            sub.add_argument("--via", action="append", metavar="RUN_DIR|CONFIG.yaml",
                             help="a generation model: a trained run or a generation config (paraphrase: one; "
                                  "back-translation: two, in order, e.g. en→fr then fr→en)")
            sub.add_argument("--output", required=True, metavar="FILE", help="new .jsonl file for the augmented rows")
            sub.add_argument("--copies", type=_positive_int, default=1, help="augmented rows per training row (default 1)")
            sub.add_argument("--rate", type=float, default=0.1, help="eda: share of words each edit touches")
            sub.add_argument("--batch-size", type=_positive_int, default=32, help="generation batch size")
        elif name == "evaluate":
            sub.add_argument("target", metavar="RUN_DIR|CONFIG.yaml",
                             help="a run directory made by `lmforge train`, or a config whose model is scored untrained "
                                  "(the 'before' of a before/after comparison)")
            sub.add_argument("overrides", nargs="*", help="section.key=value overrides (a run directory: data.* only, "
                                                          "how --data is read, e.g. data.text_column=sentence)")
            sub.add_argument("--data", metavar="FILE", help="labelled file (.jsonl/.csv/.tsv); default the test split "
                                                            "(else validation)")
            sub.add_argument("--output", metavar="DIR", help="with a config: the new folder for the report "
                                                             "(default train.output_dir, else runs/<task>-<time>)")
            sub.add_argument("--perturbed", action="store_true", help="also score a copy with typos and word swaps "
                                                                      "(robustness; text classification)")
            sub.add_argument("--adapter", metavar="NAME", help="a PEFT run: the adapter to use (see `lmforge adapters list`)")
        elif name == "predict":
            sub.add_argument("run_dir", help="a run directory made by `lmforge train`")
            sub.add_argument("overrides", nargs="*", help="data.key=value: how --input is read, e.g. "
                                                          "data.text_column=sentence data.on_error=skip")
            sub.add_argument("--input", required=True, metavar="FILE|-", help="texts: .jsonl/.csv/.tsv/.txt, or - for stdin "
                             "(one JSON object or plain text per line)")
            sub.add_argument("--output", metavar="FILE", help="where to write jsonl (default stdout)")
            sub.add_argument("--adapter", metavar="NAME", help="a PEFT run: the adapter to use (see `lmforge adapters list`)")
        elif name == "generate":
            sub.add_argument("target", metavar="MODEL|RUN_DIR", help="a packaged alias (see `lmforge models`), a model "
                                                                     "folder, or a generation run directory")
            sub.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable)")
            sub.add_argument("--input", metavar="FILE", help="prompts from .jsonl/.csv/.tsv (the --source-column field) "
                                                             "or .txt (one per line); writes jsonl")
            sub.add_argument("--source-column", default="source", help="--input: the field holding each prompt")
            sub.add_argument("--image", action="append", metavar="PATH", help="an image guiding the text (strategy "
                             "contrastive with --image-weight): one for all prompts or one per prompt")
            sub.add_argument("--image-column", default="image", help="--input .jsonl: the field holding each row's "
                                                                      "image path (relative to the file)")
            sub.add_argument("--output", metavar="FILE", help="write jsonl here instead of stdout")
            sub.add_argument("--max-new-tokens", type=_positive_int, help="longest output (default: the run's, else 128)")
            sub.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable), e.g. --stop '\\n'")
            sub.add_argument("--system", help="a model: system message before each prompt")
            sub.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None,
                             help="a model: wrap prompts in its chat template (default: when it has one)")
            sub.add_argument("--batch-size", type=_positive_int, default=8, help="prompts decoded together (default 8)")
            sub.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="bf16 autocast; auto: bf16 where the "
                             "hardware runs it natively (default: the run's, else fp32)")
            sub.add_argument("--stream", action="store_true", help="print the output as it is generated (one prompt)")
            sub.add_argument("--compare", metavar="LIST", help="strategies side by side, e.g. greedy,beam4,topp0.9,topk50,"
                                                              "minp0.1,typical0.9,sample: output, tokens, tok/s, mean "
                                                              "log-prob, distinct-2")
            _add_decode_flags(sub)
        elif name == "adapters":
            sub.add_argument("action", choices=["add", "list"], help="add: copy OTHER_RUN's adapter beside RUN_DIR's; "
                                                                     "list: the run's adapters")
            sub.add_argument("run_dir", help="a PEFT run directory")
            sub.add_argument("other_run", nargs="?", help="add: the PEFT run (same base, task and labels) to take from")
            sub.add_argument("--name", help="add: the name to use (default the other run's folder name)")
        elif name == "export":
            from lmforge.models.gguf_export import OUTTYPES

            sub.add_argument("run_dir", metavar="RUN_OR_MODEL", help="a run directory made by `lmforge train`, or a "
                                                                     "model name/folder (`lmforge models`)")
            sub.add_argument("--output", required=True, metavar="DIR", help="new folder for the model (must not exist "
                                                                            "or be empty)")
            sub.add_argument("--format", choices=("hf", "gguf", "onnx"), default="hf",
                             help="hf: a Hugging Face folder (adapters merged); gguf: one .gguf file for llama.cpp, "
                                  "Ollama, LM Studio (llama.cpp's converter); onnx: model.onnx + tokenizer, checked "
                                  "in onnxruntime (extra: export). Default hf")
            sub.add_argument("--outtype", choices=OUTTYPES, default="f16", help="gguf: weight type (default f16)")
            sub.add_argument("--converter", metavar="PATH", help="gguf: llama.cpp's convert_hf_to_gguf.py (default: "
                                                                 "$LMFORGE_LLAMA_CPP, then .venv/llama.cpp)")
        elif name == "gate":
            sub.add_argument("data", help="image-text pairs: .jsonl rows {image, text[, relevant]} or a folder with "
                                          "captions.jsonl / captions.tsv")
            sub.add_argument("--output", required=True, metavar="FILE", help="new gate file (.json)")
            sub.add_argument("--scorer", default="efficientnet-minilm", help="image-text scorer: efficientnet-minilm "
                                                                             "or an HF CLIP/SigLIP directory")
            sub.add_argument("--threshold", type=float, default=0.5, help="probability from which an image is used")
            sub.add_argument("--shuffled", action=argparse.BooleanOptionalAction, default=True,
                             help="add each text paired with another image as an irrelevant pair (default on)")
            sub.add_argument("--seed", type=int, default=0, help="seed for the shuffled pairs")
        elif name == "policy":
            sub.add_argument("target", metavar="MODEL|RUN_DIR", help="a packaged alias, a model folder or a generation run "
                                                                     "(which formats the prompts its own way)")
            sub.add_argument("--data", required=True, metavar="FILE",
                             help="prompts with references: .jsonl/.csv/.tsv rows with the run's source and target "
                                  "columns (source, target for a model)")
            sub.add_argument("--output", required=True, metavar="DIR", help="new folder for the policy, its log, "
                                                                           "report.json and arms.png")
            sub.add_argument("--arms", default="greedy,beam4", help="the decodings to choose from, as for generate "
                                                                   "--compare (default greedy,beam4)")
            sub.add_argument("--reward", default="chrf", help="reward names with weights, e.g. chrf or chrf:0.7,bleu:0.3, "
                                                              "or a YAML list of reward specs (default chrf)")
            sub.add_argument("--cost-weight", type=float, default=0.0,
                             help="reward given up per second of decoding (default 0: reward alone)")
            sub.add_argument("--layer", type=int, default=-1, help="the hidden layer the policy reads (default -1: the "
                                                                   "top, read from the decoding's own prefill)")
            sub.add_argument("--length", action="store_true", help="the policy also reads the prompt's length")
            sub.add_argument("--max-new-tokens", type=_positive_int, help="longest output (default: the run's, else 128)")
            sub.add_argument("--limit", type=_positive_int, help="the first N rows only")
            sub.add_argument("--resume", action="store_true", help="continue DIR's log, or refit a finished one "
                                                                   "(another --cost-weight, --layer or --length)")
            sub.add_argument("--seed", type=int, default=0, help="seed of the sampling arms")
        elif name == "serve":
            sub.add_argument("target", metavar="MODEL|RUN_DIR",
                             help="a packaged alias, a model folder, a generation run, or a classification / NER / "
                                  "QA / relevance-scoring run")
            sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
            sub.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
            sub.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 requests and /metrics (/health "
                                               "stays open for load balancers)")
            sub.add_argument("--public-metrics", action="store_true", help="with --api-key: serve /metrics without the "
                                                                           "key (e.g. to a Prometheus on a private network)")
            sub.add_argument("--max-body-bytes", type=_positive_int, default=1_000_000,
                             help="largest request body, counted as read (default 1000000); larger gets 413")
            sub.add_argument("--wave-wait", type=_positive_float, default=2.0,
                             help="seconds a beam/speculative request waits for the continuous batch to drain before "
                                  "it runs between two of its steps (default 2)")
            sub.add_argument("--served-model-name", help="the model name clients send (default: the folder or alias name)")
            sub.add_argument("--max-queue", type=_positive_int, default=64, help="requests that may wait; more get 429 (default 64)")
            sub.add_argument("--max-batch", type=_positive_int, default=8,
                             help="rows in the continuous batch (default 8; sampling's n counts each copy)")
            sub.add_argument("--timeout", type=_positive_float, default=300.0, help="seconds a request may take (default 300)")
            sub.add_argument("--faq", type=Path, metavar="FILE",
                             help="ground chat answers in the nearest entries of this FAQ (jsonl/csv: question, answer)")
            sub.add_argument("--faq-top-k", type=_positive_int, default=2, help="FAQ entries per answer (default 2)")
            sub.add_argument("--faq-min-score", type=float, default=0.3,
                             help="least cosine similarity for an entry to be used (default 0.3)")
            sub.add_argument("--faq-encoder", default="minilm-l6", help="sentence encoder for the FAQ (default minilm-l6)")
            sub.add_argument("--weights", choices=["fp32", "bf16", "int8"], default="fp32",
                             help="weights the server decodes with: as loaded (fp32), bf16, or weight-only int8 "
                                  "(about 2.5x faster at batch 1 on CPU; outputs may differ slightly)")
            _add_limit_flags(sub)
        elif name == "monitor":
            sub.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a trained text-classification run")
            sub.add_argument("--input", required=True, metavar="FILE|-",
                             help="texts, one a line: TEXT, TOPIC<TAB>TEXT or {\"text\", \"topic\"} JSON; - reads stdin")
            sub.add_argument("--window", type=_positive_int, default=50, help="texts per topic in the sliding window (default 50)")
            sub.add_argument("--threshold", type=float, default=0.5,
                             help="alert when a topic's negative rate reaches this (default 0.5)")
            sub.add_argument("--min-count", type=_positive_int, default=10, help="texts a topic needs before it can alert (default 10)")
            sub.add_argument("--recover-below", type=float,
                             help="an alert ends when the rate falls below this (default: threshold - 0.1)")
            sub.add_argument("--negative-label", help="the run's negative label (default: the one named negative/neg/0)")
            sub.add_argument("--alerts", type=Path, metavar="FILE", help="also append alerts here as JSON lines")
            sub.add_argument("--plot", type=Path, metavar="PNG", help="keep a trend plot of every topic's negative rate here")
            sub.add_argument("--predictions", type=Path, metavar="FILE", help="append every text's label here (JSON lines)")
            sub.add_argument("--batch-size", type=_positive_int, default=16, help="texts classified together (default 16)")
        elif name == "demo":
            sub.add_argument("overrides", nargs="*", help="section.key=value overrides of the demo config")
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
