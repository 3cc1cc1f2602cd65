"""`lmforge serve MODEL|RUN_DIR`: the OpenAI-compatible server (FastAPI + uvicorn), 127.0.0.1:8000 by default.

A decoder-only model on the CPU is served by llama.cpp alone where nothing asked at start needs torch
(serve/light_model.py: no torch imported, ~200 MB less RSS); everything else loads through torch
(recipes/served_model.py)."""

from __future__ import annotations

import errno
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from lmforge.decode.automaton_build import cancel_compiles
from lmforge.errors import ConfigError
from lmforge.serve.app import create_app
from lmforge.serve.light_model import light_served_model, trim_heap
from lmforge.serve.served import ServedModel, ServeOptions
from lmforge.serve.task_kinds import ServedTask


@dataclass
class FaqSettings:
    path: Path
    encoder: str = "minilm-l6"
    top_k: int = 2
    min_score: float = 0.3


def serve(target: str, host: str, port: int, name: str | None, options: ServeOptions,
          faq: FaqSettings | None = None, weights: str = "fp32", device: str | None = None,
          allow_network: bool = False, engine: str = "auto", chat_template: Path | None = None,
          adapters: list[str] | None = None) -> None:
    """Serve until interrupted; on shutdown in-flight requests finish first (up to 30 s). `faq` grounds chat
    answers in the nearest entries of an FAQ file (retrieval-augmented); `chat_template` replaces the model's;
    `adapters` (NAME=RUN_DIR) are LoRA runs of the base served beside it."""
    check_port_free(host, port)  # before minutes of loading, not after
    template = read_chat_template(chat_template) if chat_template is not None else None
    served: ServedModel | ServedTask | None = None
    if not (Path(target) / "config.yaml").is_file() and not adapters and faq is None and \
            options.limits.draft_model is None and options.limits.policy is None:
        served = light_served(target, name, weights, device, allow_network, engine)
    if served is None:
        from lmforge.recipes.served_model import loaded_served

        served = loaded_served(target, name, options, faq, weights, device, allow_network, engine, template,
                               adapters or [])
    elif template is not None:
        served.tokenizer.chat_template = template
    app = create_app(served, options)
    trim_heap()
    print(f"lmforge: serving {app.state.served_name!r} on http://{host}:{port}/v1 "
          f"({'API key required' if options.api_key else 'no API key'})")
    _StoppingServer(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=30, log_level="warning")).run()


def light_served(target: str, name: str | None, weights: str, device: str | None, allow_network: bool,
                 engine: str) -> ServedModel | None:
    """`target` on llama.cpp alone (serve/light_model.py), or None; torch and the model load for the first request
    its batch cannot decode."""
    served = light_served_model(target, name, weights, device, allow_network, engine)
    if served is not None:
        served.load_torch = lambda: _torch_model(target, name, weights, device, allow_network, engine)
    return served


def _torch_model(target: str, name: str | None, weights: str, device: str | None, allow_network: bool, engine: str):
    """The torch model of a server on llama.cpp alone, for the requests its batch cannot decode (llama.cpp keeps
    the weights it holds; torch reads its own back where it decodes)."""
    from lmforge.recipes.served_model import served_model

    print("lmforge: loading the torch model for a request llama.cpp's batch cannot decode", file=sys.stderr)
    return served_model(target, name, weights, device, allow_network, engine).model


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
