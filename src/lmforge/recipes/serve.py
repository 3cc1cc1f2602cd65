"""`lmforge serve MODEL|RUN_DIR`: the OpenAI-compatible server (FastAPI + uvicorn), 127.0.0.1:8000 by default."""

from __future__ import annotations

from pathlib import Path

from lmforge.recipes.generate import open_generator
from lmforge.serve.app import ServedModel, ServeOptions, create_app


def served_model(target: str, name: str | None = None) -> ServedModel:
    """The model (packaged alias, folder or generation run) the server decodes with."""
    generator = open_generator(target)
    context = getattr(generator.model.config.get_text_config(), "max_position_embeddings", None) or 2048
    return ServedModel(name or Path(target.rstrip("/")).name, generator.model, generator.tokenizer,
                       generator.max_new_tokens, int(context), generator.precision)


def serve(target: str, host: str, port: int, name: str | None, options: ServeOptions) -> None:
    """Serve until interrupted; on shutdown in-flight requests finish first (up to 30 s)."""
    import uvicorn

    app = create_app(served_model(target, name), options)
    print(f"lmforge: serving {app.state.served_name!r} on http://{host}:{port}/v1 "
          f"({'API key required' if options.api_key else 'no API key'})")
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=30, log_level="warning")
