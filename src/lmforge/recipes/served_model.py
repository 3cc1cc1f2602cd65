"""What `lmforge serve` serves when torch loads it: a generating model (`served_model`: torch weights, or llama.cpp
with the torch weights let go), its LoRA adapters side by side, an encoder or a task run."""

from __future__ import annotations

import re
from pathlib import Path

from lmforge.data.faq import read_faq
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
from lmforge.serve.retrieval import FaqRetriever
from lmforge.serve.scheduler import Experts
from lmforge.serve.served import ServedModel, ServeOptions
from lmforge.serve.task_kinds import TASK_ENDPOINTS, ServedTask


def loaded_served(target: str, name: str | None, options: ServeOptions, faq, weights: str, device: str | None,
                  allow_network: bool, engine: str, template: str | None,
                  adapters: list[str]) -> ServedModel | ServedTask:
    """What `serve` serves, loaded through torch: an encoder (/v1/embeddings), a task run, or a generating model
    with its adapters, FAQ, draft model and policy (each checked before the model loads)."""
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
    if is_task_run and template is not None:
        raise ConfigError(f"--chat-template renders chats; {target} is a {task_name} model")
    extra = adapter_runs(adapters, target, name, is_task_run or config is not None, weights, engine,
                         allow_network)
    entries = read_faq(faq.path) if faq is not None else None  # a bad FAQ file is named before the model loads
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
    return served


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
