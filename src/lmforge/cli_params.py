"""What each `lmforge VERB` takes: one params model per verb, from which its flags and help are derived
(`cli_flags.add_flags`). The decoding flags come from `DecodeParams`, serve's limits from `RequestLimits`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel

from lmforge.cli_flags import cli
from lmforge.decode.params import DecodingWeights
from lmforge.models.device import DEVICE_HELP
from lmforge.models.gguf_export import OutType


def _present_device(name: str) -> str:
    """A device name that is present here (checked before any model loads)."""
    import re

    from lmforge.errors import LmforgeError
    from lmforge.models.device import DEVICE_PATTERN, resolve_device

    if not re.match(DEVICE_PATTERN, name):
        raise ValueError(f"choose {DEVICE_HELP}")
    try:
        resolve_device(name)
    except LmforgeError as error:
        raise ValueError(str(error).partition(": ")[2]) from None
    return name


Device = Annotated[str, AfterValidator(_present_device)]
OVERRIDES_HELP = "section.key=value overrides, anywhere on the line, e.g. train.lr=3e-5 data.max_length=64"
ADAPTER_HELP = "a PEFT run: the adapter to use (see `lmforge adapters list`)"


class RunsAModel(BaseModel):
    """A verb that loads a model."""

    device: Device | None = cli(None, f"where the model runs: {DEVICE_HELP}; default the run's model.device, else auto",
                                metavar="DEVICE")


class TrainArgs(RunsAModel):
    config: str | None = cli(None, "YAML config file (see examples/)", positional=True, optional=True)
    overrides: list[str] = cli([], OVERRIDES_HELP, positional=True)
    resume: str | None = cli(None, "continue a run from its last checkpoint", metavar="RUN_DIR")


class SearchArgs(BaseModel):
    config: str | None = cli(None, "a run config with a `search:` section (space of dotted keys, sampler, trials, "
                                   "storage, workers); see examples/search_sst2.yaml", positional=True, optional=True)
    overrides: list[str] = cli([], "section.key=value, e.g. search.trials=20 search.sampler=random", positional=True)
    resume: str | None = cli(None, "continue a killed search from its study.db without repeating finished trials",
                             metavar="SEARCH_DIR")


class AugmentArgs(RunsAModel):
    config: str = cli(..., "the run config whose training split is augmented", positional=True)
    overrides: list[str] = cli([], "section.key=value overrides, e.g. data.max_train_samples=500", positional=True)
    method: Literal["eda", "paraphrase", "back-translation"] = cli(..., "how rows are rewritten")
    via: list[str] | None = cli(None, "a generation model: a trained run or a generation config (paraphrase: one; "
                                      "back-translation: two, in order, e.g. en→fr then fr→en)",
                                metavar="RUN_DIR|CONFIG.yaml")
    output: str = cli(..., "new .jsonl file for the augmented rows", metavar="FILE")
    copies: int = cli(1, "augmented rows per training row", gt=0)
    rate: float = cli(0.1, "eda: share of words each edit touches", gt=0, le=1)
    batch_size: int = cli(32, "generation batch size", gt=0)


class EvaluateArgs(RunsAModel):
    target: str = cli(..., "a run directory made by `lmforge train`, or a config whose model is scored untrained "
                           "(the 'before' of a before/after comparison)", positional=True, metavar="RUN_DIR|CONFIG.yaml")
    overrides: list[str] = cli([], "section.key=value overrides (a run directory: data.* only, how --data is read, "
                                   "e.g. data.text_column=sentence)", positional=True)
    data: str | None = cli(None, "labelled file (.jsonl/.csv/.tsv); default the test split (else validation)",
                           metavar="FILE")
    output: str | None = cli(None, "with a config: the new folder for the report (default train.output_dir, else "
                                   "runs/<task>-<time>)", metavar="DIR")
    perturbed: bool = cli(False, "also score a copy with typos and word swaps (robustness; text classification)")
    adapter: str | None = cli(None, ADAPTER_HELP, metavar="NAME")


class PredictArgs(RunsAModel):
    run_dir: str = cli(..., "a run directory made by `lmforge train`", positional=True)
    overrides: list[str] = cli([], "data.key=value: how --input is read, e.g. data.text_column=sentence "
                                   "data.on_error=skip", positional=True)
    input: str = cli(..., "texts: .jsonl/.csv/.tsv/.txt, or - for stdin (one JSON object or plain text per line)",
                     metavar="FILE|-")
    output: str | None = cli(None, "where to write jsonl (default stdout)", metavar="FILE")
    adapter: str | None = cli(None, ADAPTER_HELP, metavar="NAME")


class GenerateArgs(RunsAModel):
    target: str = cli(..., "a packaged alias (see `lmforge models`), a model folder, or a generation run directory",
                      positional=True, metavar="MODEL|RUN_DIR")
    allow_network: bool = cli(False, "a hub id may be downloaded (once; cached for offline use afterwards)")
    prompt: list[str] | None = cli(None, "a prompt (repeatable)", metavar="TEXT")
    input: str | None = cli(None, "prompts from .jsonl/.csv/.tsv (the --source-column field) or .txt (one per line); "
                                  "writes jsonl", metavar="FILE")
    source_column: str = cli("source", "--input: the field holding each prompt")
    image: list[str] | None = cli(None, "an image guiding the text (strategy contrastive with --image-weight): one "
                                        "for all prompts or one per prompt", metavar="PATH")
    image_column: str = cli("image", "--input .jsonl: the field holding each row's image path (relative to the file)")
    output: str | None = cli(None, "write jsonl here instead of stdout", metavar="FILE")
    max_new_tokens: int | None = cli(None, "longest output (default: the run's, else 128)", gt=0)
    stop: list[str] | None = cli(None, "stop string (repeatable), e.g. --stop '\\n'", metavar="TEXT")
    system: str | None = cli(None, "a model: system message before each prompt")
    chat_template: bool | None = cli(None, "a model: wrap prompts in its chat template (default: when it has one)",
                                     negatable=True)
    batch_size: int = cli(8, "prompts decoded together", gt=0)
    precision: Literal["auto", "fp32", "bf16"] | None = cli(
        None, "bf16 autocast; auto: bf16 where the hardware runs it natively (default: the run's, else fp32)")
    stream: bool = cli(False, "print the output as it is generated (one prompt)")
    compare: str | None = cli(None, "strategies side by side, e.g. greedy,beam4,topp0.9,topk50,minp0.1,typical0.9,"
                                    "sample: output, tokens, tok/s, mean log-prob, distinct-2", metavar="LIST")


class AdaptersArgs(BaseModel):
    action: Literal["add", "list"] = cli(..., "add: copy OTHER_RUN's adapter beside RUN_DIR's; list: the run's adapters",
                                         positional=True)
    run_dir: str = cli(..., "a PEFT run directory", positional=True)
    other_run: str | None = cli(None, "add: the PEFT run (same base, task and labels) to take from", positional=True,
                                optional=True)
    name: str | None = cli(None, "add: the name to use (default the other run's folder name)")


class ExportArgs(BaseModel):
    run_dir: str = cli(..., "a run directory made by `lmforge train`, or a model name/folder (`lmforge models`)",
                       positional=True, metavar="RUN_OR_MODEL")
    output: str = cli(..., "new folder for the model (must not exist or be empty)", metavar="DIR")
    format: Literal["hf", "gguf", "onnx"] = cli(
        "hf", "hf: a Hugging Face folder (adapters merged); gguf: one .gguf file for llama.cpp, Ollama, LM Studio "
              "(llama.cpp's converter); onnx: model.onnx + tokenizer, checked in onnxruntime (extra: export)")
    outtype: OutType = cli("f16", "gguf: weight type")
    converter: str | None = cli(None, "gguf: llama.cpp's convert_hf_to_gguf.py (default: $LMFORGE_LLAMA_CPP, then "
                                      ".venv/llama.cpp)", metavar="PATH")


class GateArgs(BaseModel):
    data: str = cli(..., "image-text pairs: .jsonl rows {image, text[, relevant]} or a folder with captions.jsonl / "
                         "captions.tsv", positional=True)
    output: str = cli(..., "new gate file (.json)", metavar="FILE")
    scorer: str = cli("efficientnet-minilm", "image-text scorer: efficientnet-minilm or an HF CLIP/SigLIP directory")
    threshold: float = cli(0.5, "probability from which an image is used", ge=0, le=1)
    shuffled: bool = cli(True, "add each text paired with another image as an irrelevant pair (default on)",
                         negatable=True)
    seed: int = cli(0, "seed for the shuffled pairs")


class PolicyArgs(RunsAModel):
    target: str = cli(..., "a packaged alias, a model folder or a generation run (which formats the prompts its own "
                           "way)", positional=True, metavar="MODEL|RUN_DIR")
    data: str = cli(..., "prompts with references: .jsonl/.csv/.tsv rows with the run's source and target columns "
                         "(source, target for a model)", metavar="FILE")
    output: str = cli(..., "new folder for the policy, its log, report.json and arms.png", metavar="DIR")
    arms: str = cli("greedy,beam4", "the decodings to choose from, as for generate --compare")
    reward: str = cli("chrf", "reward names with weights, e.g. chrf or chrf:0.7,bleu:0.3, or a YAML list of reward specs")
    cost_weight: float = cli(0.0, "reward given up per second of decoding (default 0: reward alone)")
    layer: int = cli(-1, "the hidden layer the policy reads (-1: the top, read from the decoding's own prefill)")
    length: bool = cli(False, "the policy also reads the prompt's length")
    max_new_tokens: int | None = cli(None, "longest output (default: the run's, else 128)", gt=0)
    limit: int | None = cli(None, "the first N rows only", gt=0)
    resume: bool = cli(False, "continue DIR's log, or refit a finished one (another --cost-weight, --layer or --length)")
    seed: int = cli(0, "seed of the sampling arms")


class ServeArgs(RunsAModel):
    target: str = cli(..., "a packaged alias, a model folder, a generation run, or a classification / NER / QA / "
                           "relevance-scoring / reward-modeling run", positional=True, metavar="MODEL|RUN_DIR")
    allow_network: bool = cli(False, "a hub id may be downloaded (once; cached for offline use afterwards)")
    host: str = cli("127.0.0.1", "address to bind (127.0.0.1: this machine only)")
    port: int = cli(8000, "port", ge=1, le=65535)
    api_key: str | None = cli(None, "require 'Authorization: Bearer KEY' on /v1 requests and /metrics (/health stays "
                                    "open for load balancers)")
    public_metrics: bool = cli(False, "with --api-key: serve /metrics without the key (e.g. to a Prometheus on a "
                                      "private network)")
    max_body_bytes: int = cli(1_000_000, "largest request body, counted as read; larger gets 413", gt=0)
    wave_wait: float = cli(2.0, "seconds a beam/speculative request waits for the continuous batch to drain before "
                                "it runs between two of its steps", gt=0)
    served_model_name: str | None = cli(None, "the model name clients send (default: the folder or alias name)")
    max_queue: int = cli(64, "requests that may wait; more get 429", gt=0)
    max_batch: int = cli(8, "rows in the continuous batch (sampling's n counts each copy)", gt=0)
    timeout: float = cli(300.0, "seconds a request may take", gt=0)
    stall_after: float = cli(300.0, "/health answers 503 'stalled' once requests have waited this many seconds with no "
                                    "decoding step done", gt=0)
    faq: Path | None = cli(None, "ground chat answers in the nearest entries of this FAQ (jsonl/csv: question, answer)",
                           metavar="FILE")
    faq_top_k: int = cli(2, "FAQ entries per answer", gt=0)
    faq_min_score: float = cli(0.3, "least cosine similarity for an entry to be used")
    faq_encoder: str = cli("minilm-l6", "sentence encoder for the FAQ")
    adapter: list[str] | None = cli(None, "NAME=RUN_DIR: a LoRA run of the served base, answered when a request's model "
                                          "is NAME (repeatable; rows of different adapters decode in one batch)",
                                    metavar="NAME=RUN_DIR")
    chat_template: Path | None = cli(None, "a Jinja chat template to render chats with instead of the model's own "
                                           "(e.g. one that shows `tools` to the model, for function calling)",
                                     metavar="FILE")
    weights: DecodingWeights = cli(
        "fp32", "weights the server decodes with: as loaded (fp32), bf16, or weight-only int8 (about 2.5x faster at "
                "batch 1 on CPU; outputs may differ slightly)")
    engine: Literal["auto", "torch", "llama.cpp"] = cli(
        "auto", "what runs the forward passes: llama.cpp on a GGUF of the model made at start and cached (--weights "
                "fp32 → f32, bf16 → bf16, int8 → q8_0; greedy, sample, beam and prompt_lookup requests), torch, or "
                "auto: llama.cpp for a decoder-only model on the CPU with llama-cpp-python installed, torch for "
                "the rest and for requests llama.cpp cannot decode. On llama.cpp a plain model folder or alias is "
                "served without importing torch until a request needs it (less memory)")


class MonitorArgs(RunsAModel):
    run_dir: Path = cli(..., "a trained text-classification run", positional=True, metavar="RUN_DIR")
    input: str = cli(..., "texts, one a line: TEXT, TOPIC<TAB>TEXT or {\"text\", \"topic\"} JSON; - reads stdin",
                     metavar="FILE|-")
    window: int = cli(50, "texts per topic in the sliding window", gt=0)
    threshold: float = cli(0.5, "alert when a topic's negative rate reaches this")
    min_count: int = cli(10, "texts a topic needs before it can alert", gt=0)
    recover_below: float | None = cli(None, "an alert ends when the rate falls below this (default: threshold - 0.1)")
    negative_label: str | None = cli(None, "the run's negative label (default: the one named negative/neg/0)")
    alerts: Path | None = cli(None, "also append alerts here as JSON lines", metavar="FILE")
    plot: Path | None = cli(None, "keep a trend plot of every topic's negative rate here", metavar="PNG")
    predictions: Path | None = cli(None, "append every text's label here (JSON lines)", metavar="FILE")
    batch_size: int = cli(16, "texts classified together", gt=0)


class DemoArgs(BaseModel):
    overrides: list[str] = cli([], "section.key=value overrides of the demo config", positional=True)


class ModelsArgs(BaseModel):
    """`lmforge models` takes nothing."""


#: verb -> the params model its flags come from
VERB_ARGS: dict[str, type[BaseModel]] = {
    "train": TrainArgs, "search": SearchArgs, "augment": AugmentArgs, "evaluate": EvaluateArgs,
    "predict": PredictArgs, "generate": GenerateArgs, "adapters": AdaptersArgs, "export": ExportArgs,
    "gate": GateArgs, "policy": PolicyArgs, "serve": ServeArgs, "monitor": MonitorArgs, "models": ModelsArgs,
    "demo": DemoArgs,
}
#: the verbs that load a model (each takes --device)
RUNS_A_MODEL = tuple(verb for verb, args in VERB_ARGS.items() if issubclass(args, RunsAModel))
