"""`lmforge serve MODEL|RUN_DIR`: the OpenAI-compatible server (FastAPI + uvicorn), 127.0.0.1:8000 by default."""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from lmforge.data.faq import read_faq
from lmforge.decode.automaton_build import cancel_compiles
from lmforge.decode.engine_choice import llama_cpp_for, model_on_torch_reason, say_engine
from lmforge.decode.generate import pad_id_of
from lmforge.decode.llama_cpp_engine import llama_cpp_runtime
from lmforge.decode.policy import load_policy
from lmforge.decode.strategies.speculative import load_draft_model
from lmforge.errors import ConfigError
from lmforge.models.precision import decoding_weights
from lmforge.models.released_weights import release_weights
from lmforge.models.sentence import SentenceEncoder
from lmforge.recipes.generate import Generator, open_generator
from lmforge.runs.adapters import side_adapters
from lmforge.runs.run_dir import load_run_config
from lmforge.runs.served_task import served_encoder, served_task
from lmforge.serve.app import create_app
from lmforge.serve.retrieval import FaqRetriever
from lmforge.serve.scheduler import Experts
from lmforge.serve.served import ServedModel, ServeOptions
from lmforge.serve.task_kinds import TASK_ENDPOINTS, ServedTask


@dataclass
class FaqSettings:
    path: Path
    encoder: str = "minilm-l6"
    top_k: int = 2
    min_score: float = 0.3


def served_model(target: str, name: str | None = None, weights: str = "fp32", device: str | None = None,
                 allow_network: bool = False, engine: str = "auto") -> ServedModel:
    """The model (packaged alias, folder or generation run) the server decodes with, its weights as loaded
    ("fp32"), in bf16 or weight-only int8 (`models.precision.decoding_weights`); with `engine` llama.cpp, a GGUF
    of it at that precision (converted now, cached) runs the forward passes, and its torch weights are let go
    (auto: where llama.cpp can hold the model; a request llama.cpp cannot decode reads them back and runs on
    torch). A strategy-network run brings its router and experts: each prompt is decoded by the expert the
    router picks."""
    generator = open_generator(target, device=device, allow_network=allow_network)
    context = getattr(generator.model.config.get_text_config(), "max_position_embeddings", None) or 2048
    experts = _experts(generator)
    if experts is not None and (weights != "fp32" or engine == "llama.cpp"):
        flag = f"--weights {weights}" if weights != "fp32" else f"--engine {engine}"
        raise ConfigError(f"{flag}: {target} is a strategy network, served with its weights as loaded by torch; "
                          f"drop {flag.split()[0]}")
    served = ServedModel(name or Path(target.rstrip("/")).name, generator.model, generator.tokenizer,
                         generator.max_new_tokens, int(context), generator.precision, experts=experts)
    if engine == "llama.cpp":
        if generator.model.config.is_encoder_decoder:
            raise ConfigError(f"--engine llama.cpp serves decoder-only models; {target} is an encoder-decoder")
        served.runtime = llama_cpp_runtime(generator.model, weights)
    elif engine == "auto" and experts is None:
        served.runtime = llama_cpp_for(generator.model, weights)
    if served.runtime is not None:
        served.decoding = {"engine": engine, "weights": weights}
        release_weights(generator.model)  # llama.cpp holds its own copy
    else:
        served.model = decoding_weights(generator.model, weights)
        served.decoding = {"engine": "torch"}
    if engine == "auto":
        say_engine(str(generator.model.name_or_path), "torch" if served.runtime is None else "llama.cpp",
                   model_on_torch_reason(generator.model, weights) if served.runtime is None else
                   "requests for other strategies read the torch weights back and decode on torch")
    return served


def _experts(generator: Generator) -> Experts | None:
    """A strategy network's router and expert switch, for the scheduler (None for a single model)."""
    found = generator.task.expert_router(generator.model, pad_id_of(generator.tokenizer), generator.precision)
    return None if found is None else Experts(*found)


def _load_server_resources(served: ServedModel, options: ServeOptions) -> None:
    """Load the draft model and decoding policy named at start (requests may not name files), so a wrong
    path stops the server before it listens, and no request pays for the loading."""
    if options.limits.draft_model is not None:
        load_draft_model(options.limits.draft_model, next(served.model.parameters()).device)
    if options.limits.policy is not None:
        load_policy(options.limits.policy)
    if served.experts is not None and (options.limits.draft_model or options.limits.policy):
        raise ConfigError("--draft-model and --policy apply to a single model; this run is a strategy network")


def serve(target: str, host: str, port: int, name: str | None, options: ServeOptions,
          faq: FaqSettings | None = None, weights: str = "fp32", device: str | None = None,
          allow_network: bool = False, engine: str = "auto", chat_template: Path | None = None,
          adapters: list[str] | None = None) -> None:
    """Serve until interrupted; on shutdown in-flight requests finish first (up to 30 s). `faq` grounds chat
    answers in the nearest entries of an FAQ file (retrieval-augmented); `chat_template` replaces the model's;
    `adapters` (NAME=RUN_DIR) are LoRA runs of the base served beside it."""
    check_port_free(host, port)  # before minutes of loading, not after
    run_dir = Path(target)
    config = load_run_config(run_dir) if (run_dir / "config.yaml").is_file() else None
    encoder = served_encoder(target, name, device, allow_network) if config is None else None  # e.g. minilm-l6: /v1/embeddings
    task_name = config.task.name if config is not None else "feature-extraction" if encoder is not None else None
    is_task_run = task_name in TASK_ENDPOINTS or encoder is not None
    if is_task_run and faq is not None:
        raise ConfigError(f"--faq grounds chat answers; {target} is a {task_name} model")
    if is_task_run and weights != "fp32":
        raise ConfigError(f"--weights {weights} applies to generation; {target} is a {task_name} model")
    if is_task_run and engine == "llama.cpp":
        raise ConfigError(f"--engine {engine} applies to generation; {target} is a {task_name} model")
    if is_task_run and chat_template is not None:
        raise ConfigError(f"--chat-template renders chats; {target} is a {task_name} model")
    extra = adapter_runs(adapters or [], target, name, is_task_run or config is not None, weights, engine,
                         allow_network)
    entries = read_faq(faq.path) if faq is not None else None  # a bad FAQ file is named before the model loads
    template = read_chat_template(chat_template) if chat_template is not None else None
    if encoder is not None:
        served: ServedModel | ServedTask = encoder
    elif is_task_run:
        served = served_task(run_dir, name, device)
    else:
        added = side_adapters(run_dir) if config is not None else {}  # the run's `lmforge adapters add` set
        served = served_model(target, name, weights, device, allow_network,
                              "torch" if (extra or added) and engine == "auto" else engine)  # adapters: torch
        if template is not None:
            served.tokenizer.chat_template = template
        if extra or added:
            attach_adapters(served, extra or added, own=served.model.active_adapter if added else None)
        _load_server_resources(served, options)
        if faq is not None:
            served.retriever = FaqRetriever(entries, SentenceEncoder(faq.encoder), faq.top_k, faq.min_score)
            print(f"lmforge: chat answers grounded in {len(entries)} FAQ entries of {faq.path}")
    app = create_app(served, options)
    print(f"lmforge: serving {app.state.served_name!r} on http://{host}:{port}/v1 "
          f"({'API key required' if options.api_key else 'no API key'})")
    _StoppingServer(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=30, log_level="warning")).run()


def adapter_runs(specs: list[str], target: str, name: str | None, target_is_run: bool, weights: str, engine: str,
                 allow_network: bool) -> dict[str, Path]:
    """NAME → adapter folder of each `--adapter NAME=RUN_DIR`, checked before anything loads: a generation run
    with a LoRA adapter trained on the served base, a name of its own."""
    from lmforge.models.adapters import base_model_path, is_adapter_dir
    from lmforge.models.resolve import resolve_model
    from lmforge.runs.run_dir import model_dir

    if not specs:
        return {}
    if target_is_run:
        raise ConfigError(f"--adapter: serve the base model the runs were trained on (an alias or folder), not the "
                          f"run {target}")
    if weights != "fp32" or engine == "llama.cpp":
        raise ConfigError("--adapter: adapters are served on the base's fp32 weights by torch; drop --weights/--engine")
    base = Path(resolve_model(target, allow_network)).resolve()
    found: dict[str, Path] = {}
    for spec in specs:
        adapter, _, run = spec.partition("=")
        if not adapter or not run or not re.fullmatch(r"[A-Za-z0-9._:/-]{1,128}", adapter):
            raise ConfigError(f"--adapter {spec}: give NAME=RUN_DIR (a name of letters, digits, . _ : / -)")
        if adapter in found or adapter == (name or Path(target.rstrip("/")).name):
            raise ConfigError(f"--adapter {spec}: the name {adapter!r} is taken; give each adapter its own")
        config = load_run_config(Path(run))
        if config.task.name != "generation":
            raise ConfigError(f"--adapter {spec}: {run} is a {config.task.name} run; adapters served here are "
                              "generation runs")
        folder = model_dir(Path(run))
        if not is_adapter_dir(folder):
            raise ConfigError(f"--adapter {spec}: {run} trained the whole model, not an adapter (tuning.peft); "
                              f"serve it on its own: lmforge serve {run}")
        trained_on = Path(base_model_path(folder)).resolve()
        if trained_on != base:
            raise ConfigError(f"--adapter {spec}: {run} was trained on {trained_on}, not on the served base {base}")
        found[adapter] = folder
    return found


def attach_adapters(served: ServedModel, folders: dict[str, Path], own: str | None = None) -> None:
    """Load each adapter beside the base (one copy of the base weights); requests pick one by name. `own`: the
    served model is a run with that adapter of its own, which requests naming the run decode with."""
    from peft import PeftModel

    if served.runtime is not None:
        raise ValueError("adapters decode on torch: load the served model with engine='torch'")
    model = served.model
    for adapter, folder in folders.items():
        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=adapter, is_trainable=False)
        else:
            model = PeftModel.from_pretrained(model, str(folder), adapter_name=adapter, is_trainable=False)
    served.model, served.adapters, served.default_adapter = model.eval(), tuple(folders), own
    print(f"lmforge: {len(folders)} adapter(s) beside the base: {', '.join(folders)}")


def read_chat_template(path: Path) -> str:
    """A Jinja chat template file's text, checked to compile (one line naming the file otherwise)."""
    import jinja2

    if not path.is_file():
        raise ConfigError(f"--chat-template {path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"--chat-template {path}, line {error.lineno}: not a Jinja template ({error.message})") from None
    return text


def check_port_free(host: str, port: int) -> None:
    """Refuse a host and port another process listens on (as uvicorn will bind it: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "already in use (another server?)" if error.errno == errno.EADDRINUSE else error.strerror
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port}: {reason}; choose another --port or "
                              "--host") from None


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM/SIGINT also stops constraint compiles in flight, so shutdown never
    waits on one."""

    def handle_exit(self, sig: int, frame) -> None:
        cancel_compiles()
        super().handle_exit(sig, frame)
