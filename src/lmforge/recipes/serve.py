"""`lmforge serve MODEL|RUN_DIR`: the OpenAI-compatible server (FastAPI + uvicorn), 127.0.0.1:8000 by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.data.squad import QAExample
from lmforge.errors import ConfigError
from lmforge.evaluate.inference import predict
from lmforge.recipes.evaluate import load_trained
from lmforge.recipes.generate import open_generator
from lmforge.recipes.run_dir import load_run_config
from lmforge.serve.app import ServedModel, ServeOptions, create_app
from lmforge.serve.task_routes import TASK_ENDPOINTS, ServedTask


def served_model(target: str, name: str | None = None) -> ServedModel:
    """The model (packaged alias, folder or generation run) the server decodes with."""
    generator = open_generator(target)
    context = getattr(generator.model.config.get_text_config(), "max_position_embeddings", None) or 2048
    return ServedModel(name or Path(target.rstrip("/")).name, generator.model, generator.tokenizer,
                       generator.max_new_tokens, int(context), generator.precision)


def served_task(run_dir: Path, name: str | None = None) -> ServedTask:
    """A trained run of a classification, NER or QA task, answering through its own predict path."""
    config = load_run_config(run_dir)
    if config.task.name not in TASK_ENDPOINTS:
        raise ConfigError(f"{run_dir} is a {config.task.name} run; serve runs of {', '.join(sorted(TASK_ENDPOINTS))} "
                          "or generation")
    task, model, tokenizer = load_trained(run_dir, config)

    def example(row: Any, n: int) -> Any:
        if isinstance(row, dict):  # question answering
            return QAExample(f"request-{n}", row["question"], row["context"], None, f"request input {n}")
        return task.example_from_text(row, f"request input {n}")

    def run(rows: list[Any]) -> list[dict]:
        examples = [example(row, n) for n, row in enumerate(rows)]
        features = task.encode(examples, tokenizer, config.data.max_length)
        return predict(task, model, features, examples, config.train.eval_batch_size, tokenizer.pad_token_id,
                       config.train.precision)
    return ServedTask(name or run_dir.name, config.task.name, run)


def serve(target: str, host: str, port: int, name: str | None, options: ServeOptions) -> None:
    """Serve until interrupted; on shutdown in-flight requests finish first (up to 30 s)."""
    import uvicorn

    run_dir = Path(target)
    is_task_run = (run_dir / "config.yaml").is_file() and load_run_config(run_dir).task.name in TASK_ENDPOINTS
    app = create_app(served_task(run_dir, name) if is_task_run else served_model(target, name), options)
    print(f"lmforge: serving {app.state.served_name!r} on http://{host}:{port}/v1 "
          f"({'API key required' if options.api_key else 'no API key'})")
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=30, log_level="warning")
