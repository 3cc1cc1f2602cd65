"""`lmforge generate MODEL|RUN_DIR`: decode prompts with any strategy, stream, explain, or compare
strategies side by side.

A run directory brings its prompt format (system message, template, chat template) and its
`task.decode` settings; a model (packaged alias or folder) is prompted through its chat template
when it has one. Flags override the decode settings field by field.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pydantic import ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lmforge.data.errors_policy import RowErrors
from lmforge.data.generation import GenerationExample
from lmforge.data.params import DataParams
from lmforge.data.readers import read_records
from lmforge.decode.candidate import Candidate
from lmforge.decode.engine_choice import mark_as_saved
from lmforge.decode.generate import generate, pad_id_of
from lmforge.decode.params import DecodeParams, shared_fields
from lmforge.decode.request import DecodeRequest, PromptInputs
from lmforge.errors import ConfigError
from lmforge.models.device import place
from lmforge.models.resolve import resolve_model
from lmforge.runs.load import load_trained, task_tokenizer
from lmforge.runs.run_dir import load_run_config
from lmforge.tasks.generation import Generation, GenerationParams
from lmforge.vision.images import load_image
from lmforge.vision.scorer import ImageTextScorer

MAX_LENGTH = 2048  # prompt tokens kept (the end of longer prompts)


@dataclass
class Generator:
    """A model ready to decode prompts the way its run (or its chat template) formats them."""

    task: Generation
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    decode: DecodeParams
    max_new_tokens: int
    stop_strings: list[str]
    precision: str = "fp32"

    def prompt_ids(self, texts: list[str]) -> list[list[int]]:
        return self.example_prompt_ids([self.task.example_from_text(t, f"prompt {i + 1}") for i, t in enumerate(texts)])

    def example_prompt_ids(self, examples: list[GenerationExample]) -> list[list[int]]:
        """The prompt tokens of each example, formatted the way the run (or the chat template) prompts."""
        return [f["input_ids"][: f["_prompt_length"]] for f in self.task.encode(examples, self.tokenizer, MAX_LENGTH)]

    def run(self, texts: list[str], params: DecodeParams, batch_size: int = 8, images: list[Image.Image | None] | None = None,
            image_scorer: ImageTextScorer | None = None) -> list[list[Candidate]]:
        return self.run_ids(self.prompt_ids(texts), params, batch_size, images, image_scorer, texts)

    def run_ids(self, prompts: list[list[int]], params: DecodeParams, batch_size: int = 8,
                images: list[Image.Image | None] | None = None, image_scorer: ImageTextScorer | None = None,
                texts: list[str] | None = None) -> list[list[Candidate]]:
        """Candidates per prompt; `texts` (the prompts as the user wrote them) are what `decode.image_gate` judges."""
        def decode(rows: list[int]) -> list[list[Candidate]]:
            def pick(values: list | None) -> list | None:
                return None if values is None else [values[i] for i in rows]
            inputs = PromptInputs(images=pick(images), image_scorer=image_scorer, prompt_texts=pick(texts))
            return generate(self.model, self.tokenizer, DecodeRequest(pick(prompts), params, self.max_new_tokens,
                                                                      self.stop_strings, batch_size, self.precision,
                                                                      inputs=inputs))

        # (a strategy network's router picks each prompt's expert; one model decodes them all)
        return self.task.decode_by_expert(self.model, prompts, batch_size, pad_id_of(self.tokenizer), self.precision,
                                          decode)[0]


def open_generator(target: str, system: str | None = None, chat_template: bool | None = None,
                   max_new_tokens: int | None = None, stop_strings: list[str] | None = None,
                   precision: str | None = None, device: str | None = None, allow_network: bool = False) -> Generator:
    """A trained generation run, or a model reference (packaged alias, folder, or with `allow_network` a hub id)
    with a plain prompt, on `device` (default: the run's model.device, else auto)."""
    if (Path(target) / "config.yaml").is_file():
        config = load_run_config(Path(target))
        if not isinstance(config.task, GenerationParams):
            raise ConfigError(f"{target} was trained for {config.task.name}, not generation; "
                              f"use `lmforge predict {target}` for its predictions")
        if system is not None or chat_template is not None:
            raise ConfigError("--system and --chat-template/--no-chat-template apply to a model; a run keeps its prompt format")
        task, model, tokenizer = load_trained(Path(target), config, device=device)
        params, run_precision = config.task, config.train.precision
    else:
        params = GenerationParams(system=system, chat_template=chat_template)
        task = Generation(params)
        path = resolve_model(target, allow_network)
        tokenizer = task_tokenizer(task, path, local_files_only=not allow_network)
        model, run_precision = place(task.build_model(path, local_files_only=not allow_network,
                                                      trust_remote_code=False), device or "auto"), "fp32"
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if max_new_tokens is not None and context and max_new_tokens > context:
        raise ConfigError(f"--max-new-tokens {max_new_tokens} is more than {target} can attend to ({context} positions, "
                          "prompt included); give at most that")
    return Generator(task, mark_as_saved(model.eval()), tokenizer, params.decode, max_new_tokens or params.max_new_tokens,
                     params.stop_strings if stop_strings is None else stop_strings, precision or run_precision)


def decode_params(base: DecodeParams, flags: dict[str, Any]) -> DecodeParams:
    """`base` with the flags the user gave; a new strategy starts from the base's shared rules only."""
    given = {k: v for k, v in flags.items() if v is not None and v != [] and v != {}}
    kept = base.model_dump(exclude_unset=True)
    if "strategy" in given and given["strategy"] != base.strategy:
        kept = shared_fields(kept)
    try:
        return DecodeParams.model_validate(kept | given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "--" + ".".join(str(p) for p in error["loc"]).replace("_", "-") if error["loc"] else "decoding options"
        raise ConfigError(f"{where}: {error['msg']}".replace("Value error, ", "")) from None


COMPARE_SPEC = re.compile(r"^(greedy|sample|lookup|contrastive|beam(\d+)|topk(\d+)|topp([\d.]+)|minp([\d.]+)|"
                          r"typical([\d.]+))$")
SIMPLE_SPECS = {"greedy": {}, "lookup": {"strategy": "prompt_lookup"}, "contrastive": {"strategy": "contrastive"}}


def compare_params(spec: str, seed: int) -> DecodeParams:
    """A `--compare` entry: greedy, sample, lookup, contrastive, beamN, topkN, toppP, minpP or typicalP."""
    match = COMPARE_SPEC.match(spec.strip())
    if match is None:
        raise ConfigError(f"--compare: unknown entry {spec!r}; use greedy, sample, lookup, contrastive, beamN, topkN, "
                          "toppP, minpP or typicalP (e.g. --compare greedy,beam4,topp0.9,contrastive)")
    _, beams, k, p, minp, typical = match.groups()
    if beams:
        return DecodeParams(strategy="beam", num_beams=int(beams))
    if spec.strip() in SIMPLE_SPECS:
        return DecodeParams(**SIMPLE_SPECS[spec.strip()])
    knobs = {"top_k": int(k) if k else None, "top_p": float(p) if p else None, "min_p": float(minp) if minp else None,
             "typical_p": float(typical) if typical else None}
    return DecodeParams(strategy="sample", seed=seed, **{name: v for name, v in knobs.items() if v is not None})


def mean_logprob(model: PreTrainedModel, prompt: list[int], tokens: list[int]) -> float:
    """The model's mean log-probability per generated token (one scale for every strategy)."""
    if not tokens:
        return 0.0
    device = next(model.parameters()).device
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            logits = model(input_ids=torch.tensor([prompt], device=device),
                           labels=torch.tensor([tokens], device=device)).logits[0]
            targets = torch.tensor(tokens, device=device)
        else:
            sequence = torch.tensor([prompt + tokens], device=device)
            logits = model(input_ids=sequence).logits[0, len(prompt) - 1:-1]
            targets = sequence[0, len(prompt):]
        return float(logits.float().log_softmax(-1).gather(1, targets[:, None]).mean())


def distinct_2(tokens: list[int]) -> float:
    """Share of distinct bigrams (1.0 = no repeated bigram)."""
    pairs = list(zip(tokens, tokens[1:], strict=False))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def compare(generator: Generator, texts: list[str], specs: list[str], seed: int, batch_size: int) -> list[dict]:
    """Every strategy on every prompt: output, tokens, tokens/s, mean log-prob and distinct-2."""
    prompts = generator.prompt_ids(texts)
    rows = []
    for spec in specs:
        params = compare_params(spec, seed)
        started = time.perf_counter()
        outputs = generator.run_ids(prompts, params, batch_size)
        seconds = time.perf_counter() - started
        produced = sum(len(c[0].tokens) for c in outputs)
        for index, (prompt, candidates) in enumerate(zip(prompts, outputs, strict=True)):
            best = candidates[0]
            rows.append({"prompt": index, "strategy": spec, "tokens": len(best.tokens),
                         "tokens_per_s": produced / seconds if seconds else 0.0,
                         "mean_logprob": mean_logprob(generator.model, prompt, best.tokens),
                         "distinct_2": distinct_2(best.tokens), "text": generator.task.text(best.tokens)})
    return rows


def read_prompts(prompts: list[str], input_path: str | None, source_column: str) -> list[str]:
    """--prompt texts, else the sources of --input (.jsonl/.csv/.tsv/.txt)."""
    if prompts and input_path:
        raise ConfigError("give --prompt or --input, not both")
    if prompts:
        return prompts
    if not input_path:
        raise ConfigError("give at least one --prompt TEXT or --input FILE")
    task = Generation(GenerationParams(source_column=source_column))
    examples = task.read_file(input_path, DataParams(), RowErrors.without_config(), labelled=False)
    return [e.source if e.source is not None else json.dumps(e.messages) for e in examples]


def read_prompt_images(paths: list[str], input_path: str | None, image_column: str, count: int) -> list[Image.Image] | None:
    """--image paths (one, shared by every prompt, or one per prompt), else the `image_column` of a .jsonl
    --input (paths relative to the file's folder); None when neither names an image."""
    if paths:
        if len(paths) not in (1, count):
            raise ConfigError(f"--image: give one image for all prompts or one per prompt ({count}), not {len(paths)}")
        images = [load_image(p) for p in paths]
        return images * count if len(images) == 1 else images
    if not input_path or not input_path.endswith(".jsonl"):
        return None
    named = [row.get(image_column) for _, row in read_records(input_path, errors=RowErrors.without_config())]
    if not any(named):
        return None
    missing = [n for n, name in enumerate(named, start=1) if not isinstance(name, str) or not name]
    if missing:
        raise ConfigError(f"{input_path}: line {missing[0]} has no {image_column!r} path; give every row an image "
                          "or none")
    return [load_image(Path(input_path).parent / name) for name in named]


def explain_table(tokenizer: PreTrainedTokenizerBase, candidate: Candidate) -> str:
    """One line per generated token: its log-probability and the most likely alternatives (beam search: the
    log-probs along the winning path, whose sum over length**length_penalty is its score)."""
    lines = [f"{'#':>3}  {'token':<14} {'logprob':>8}  alternatives (logprob)"]
    for n, step in enumerate(candidate.steps, start=1):
        token = repr(tokenizer.decode([step["token"]]))
        others = "  ".join(f"{tokenizer.decode([t])!r} {v:.2f}" for t, v in step["top"])
        lines.append(f"{n:>3}  {token:<14} {step['logprob']:>8.3f}  {others}")
    total = sum(step["logprob"] for step in candidate.steps)
    lines.append(f"sum of log-probs {total:.3f} over {len(candidate.steps)} tokens; ranking score {candidate.score:.3f}")
    return "\n".join(lines)


def compare_table(texts: list[str], rows: list[dict], width: int = 70) -> str:
    """Per prompt, one line per strategy: tokens, tokens/s, mean log-prob, distinct-2 and the output."""
    out = []
    for index, text in enumerate(texts):
        out.append(f"prompt {index + 1}: {text[:width]!r}")
        out.append(f"  {'strategy':<12} {'tokens':>6} {'tok/s':>7} {'logprob':>8} {'dist-2':>6}  output")
        for row in (r for r in rows if r["prompt"] == index):
            shown = "".join(c if c.isprintable() else " " for c in row["text"].replace("\n", " ⏎ "))
            shown = shown if len(shown) <= width else shown[: width - 1] + "…"
            out.append(f"  {row['strategy']:<12} {row['tokens']:>6} {row['tokens_per_s']:>7.1f} {row['mean_logprob']:>8.3f} "
                       f"{row['distinct_2']:>6.2f}  {shown}")
    return "\n".join(out)
