"""`lmforge augment`: new training rows from a config's training split, kept in their own file.

Methods: `eda` (word-level edits with embedding-neighbour synonyms), `paraphrase` (one generation model
rewrites each text) and `back-translation` (two generation models, e.g. en→fr then fr→en). A generation
model is a trained run directory or a generation config whose model is used as it is (an instruct
model with a prompt). Every row records the text it came from and how; train on the rows with
`data.train_extra: [FILE]`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from lmforge.config.loader import load_config
from lmforge.config.validate import validate_config
from lmforge.data.augment import eda
from lmforge.data.generation import GenerationExample
from lmforge.errors import ConfigError, DataError
from lmforge.evaluate.perturb import embedding_neighbours, vocabulary
from lmforge.files import atomic_write_text
from lmforge.models.resolve import SCRATCH_MODEL, resolve_model
from lmforge.recipes.evaluate import pretrained_embeddings
from lmforge.runs.load import load_pretrained, load_trained, task_tokenizer
from lmforge.runs.run_dir import load_run_config
from lmforge.runs.schema import RunConfig
from lmforge.tasks import build_task

METHODS = {"eda": 0, "paraphrase": 1, "back-translation": 2}  # method -> generation models it chains


def generation_config(reference: str) -> RunConfig:
    """The config of a generation run directory or generation config file (one-line errors otherwise)."""
    path = Path(reference)
    if path.is_dir():
        config = load_run_config(path)
    elif path.suffix in (".yaml", ".yml") and path.is_file():
        config = validate_config(RunConfig, load_config(str(path)))
    else:
        raise ConfigError(f"--via {reference}: not found; give a generation run directory or a generation config (.yaml)")
    if config.task.name != "generation":
        raise ConfigError(f"--via {reference}: its task is {config.task.name}; augmentation needs a generation model")
    return config


def text_generator(reference: str, batch_size: int, device: str = "auto") -> Callable[[list[str]], list[str]]:
    """texts -> generated texts, with a trained generation run or a generation config's (untrained) model, on
    `device`."""
    config = generation_config(reference)
    config = config.model_copy(update={"model": config.model.model_copy(update={"device": device})})
    if Path(reference).is_dir():
        task, model, tokenizer = load_trained(Path(reference), config)
    else:
        task = build_task(config.task)
        model, tokenizer = load_pretrained(task, config)
    model.eval()

    def generate(texts: list[str]) -> list[str]:
        examples = [GenerationExample(text, None, f"row {n}") for n, text in enumerate(texts)]
        features = task.encode(examples, tokenizer, config.data.max_length)
        outputs = task.generate(model, features, examples, batch_size, tokenizer.pad_token_id, config.train.precision,
                                progress=True)
        return [output["generated"] for output in outputs]

    return generate


def augment(config: RunConfig, method: str, via: list[str], output: Path, copies: int = 1, rate: float = 0.1,
            batch_size: int = 32) -> int:
    """Write augmented copies of the config's training rows to `output` (jsonl); return how many."""
    if method not in METHODS:
        raise ConfigError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if len(via) != METHODS[method]:
        raise ConfigError(f"--method {method} needs {METHODS[method]} --via generation model(s), got {len(via)}")
    if output.exists():
        raise DataError(f"{output} already exists; give a new --output file (augmented rows are never overwritten)")
    if config.task.name not in ("text-classification", "prompt-classification"):
        raise ConfigError(f"augment works on text classification data, not {config.task.name}")
    for reference in via:  # every model reference is checked before the first (slow) generation step
        generation_config(reference)
    task = build_task(config.task)
    train = task.read_splits(config.data, config.train.seed).train
    if any(example.text_pair is not None for example in train):
        raise DataError("augment rewrites single texts; sentence pairs (data.text_pair_column) are not supported")
    rng = random.Random(config.train.seed)
    originals = [example for example in train for _ in range(copies)]
    if method == "eda":
        if config.model.name == SCRATCH_MODEL:
            raise ConfigError("eda takes its synonyms from a pretrained model's embeddings; set model to one")
        path = resolve_model(config.model.name, config.model.allow_network)
        neighbours = embedding_neighbours(vocabulary([e.text for e in train]), task_tokenizer(task, path),
                                          pretrained_embeddings(config, None))
        made = [eda(example.text, rng, neighbours, rate) for example in originals]
        texts, how = [text for text, _ in made], [f"eda:{name}" for _, name in made]
    else:
        texts = [example.text for example in originals]
        for step, reference in enumerate(via, start=1):
            print(f"lmforge: {method} step {step}/{len(via)} with {reference} ({len(texts)} texts)", file=sys.stderr)
            texts = text_generator(reference, batch_size, config.model.device)(texts)
        how = [method] * len(texts)
    column, label_column = config.data.text_column, config.data.label_column
    multi_label = getattr(config.task, "multi_label", False)
    rows = [{column: text, label_column: list(e.labels) if multi_label else e.labels[0],
             "augmented_from": e.text, "method": name, "source": e.where}
            for e, text, name in zip(originals, texts, how, strict=True) if text.strip() and text.strip() != e.text.strip()]
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"lmforge: wrote {len(rows)} augmented rows ({len(originals) - len(rows)} unchanged or empty dropped) to "
          f"{output}; train on them with data.train_extra=[{output}]", file=sys.stderr)
    return len(rows)
