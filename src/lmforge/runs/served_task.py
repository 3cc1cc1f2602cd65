"""A trained run of a non-generating task (classification, NER, QA, relevance scoring) answering rows through
its own predict path — what `lmforge serve`, `monitor` and reward models of sequence-level training call.
Free of the HTTP stack, so those work without the `serve` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.data.labelled import TextExample
from lmforge.data.preference import PreferenceExample
from lmforge.data.squad import QAExample
from lmforge.errors import ConfigError
from lmforge.evaluate.inference import predict
from lmforge.models.sentence import SentenceEncoder
from lmforge.runs.load import load_trained
from lmforge.runs.run_dir import load_run_config
from lmforge.serve.task_kinds import TASK_ENDPOINTS, ServedTask


def served_task(run_dir: Path, name: str | None = None, device: str | None = None) -> ServedTask:
    """A trained run of a classification, NER, QA, relevance-scoring or reward-modeling task, answering through its
    own predict path."""
    config = load_run_config(run_dir)
    if config.task.name not in TASK_ENDPOINTS:
        raise ConfigError(f"{run_dir} is a {config.task.name} run; serve runs of {', '.join(sorted(TASK_ENDPOINTS))} "
                          "or generation")
    task, model, tokenizer = load_trained(run_dir, config, device=device)

    def example(row: Any, n: int) -> Any:
        if isinstance(row, dict) and "question" in row:  # question answering
            return QAExample(f"request-{n}", row["question"], row["context"], None, f"request input {n}")
        if isinstance(row, dict) and "completion" in row:  # a reward model
            return PreferenceExample(row["prompt"], row["completion"], None, f"request input {n}")
        if isinstance(row, dict):  # relevance scoring
            return TextExample(row["query"], row["candidate"], (), f"request input {n}")
        return task.example_from_text(row, f"request input {n}")

    def run(rows: list[Any]) -> list[dict]:
        examples = [example(row, n) for n, row in enumerate(rows)]
        features = task.encode(examples, tokenizer, config.data.max_length)
        return predict(task, model, features, examples, config.train.eval_batch_size, tokenizer.pad_token_id,
                       config.train.precision)
    embedder = None if writes_text(model.config) else SentenceEncoder.of(model, tokenizer, config.data.max_length)
    return ServedTask(name or run_dir.name, config.task.name, run, embedder)


def writes_text(config) -> bool:
    """Whether a model config is a text writer (decoder, encoder-decoder) rather than a BERT-like encoder."""
    writes = any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in config.architectures or [])
    return writes or config.is_encoder_decoder or getattr(config, "is_decoder", False)


def served_encoder(target: str, name: str | None = None, device: str | None = None,
                   allow_network: bool = False) -> ServedTask | None:
    """An encoder model (packaged alias or folder, not a run) served for /v1/embeddings; None for a text writer."""
    from transformers import AutoConfig

    from lmforge.models.resolve import resolve_model

    path = resolve_model(target, allow_network)
    if writes_text(AutoConfig.from_pretrained(path, local_files_only=not allow_network)):
        return None
    return ServedTask(name or Path(target.rstrip("/")).name, "feature-extraction", None,
                      SentenceEncoder(path, device=device or "auto"))
