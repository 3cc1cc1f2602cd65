"""Tiny models built from configs, with tokenizers trained on the fly, and small data files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

POSITIVE = ["good", "great", "fine", "lovely", "superb", "happy", "excellent", "nice"]
NEGATIVE = ["bad", "awful", "poor", "dull", "terrible", "sad", "boring", "weak"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "plot", "and", "it", "very", "quite", "of", "this"]
#: a second toy task (continual learning): a sentence's topic
TOPICS = {"food": ["pizza", "bread", "soup", "cheese"], "sport": ["football", "tennis", "golf", "race"]}


def make_sentences(count: int, seed: int = 0) -> list[dict]:
    """Rows {text, label} whose label is given by a sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def topic_rows(count: int, seed: int) -> list[dict]:
    """Rows {text, label} whose label (food or sport) is given by one topic word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(sorted(TOPICS))
        rows.append({"text": f"the {rng.choice(TOPICS[label])} was {rng.choice(['a', 'the', 'very'])} {label}ish",
                     "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def wordpiece_vocab(words: list[str]) -> dict[str, int]:
    """BERT's specials, `words` whole, then every lowercase letter, digit and ASCII punctuation mark alone and as a
    `##` continuation: other words split into characters. Built, not trained: the WordPiece trainer breaks ties in
    a different order in every process, which made tiny-model tests pass or fail by chance."""
    import string

    characters = string.ascii_lowercase + string.digits + string.punctuation
    tokens = dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *characters,
                            *(f"##{c}" for c in characters)])
    return {token: index for index, token in enumerate(tokens)}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT (seeded) with a WordPiece tokenizer of the test vocabulary."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = Tokenizer(models.WordPiece(wordpiece_vocab(POSITIVE + NEGATIVE + FILLER + sum(TOPICS.values(), [])), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    fast.save_pretrained(folder)
    config = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=fast.pad_token_id)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture
def sentiment_files(tmp_path) -> dict[str, Path]:
    """train/validation jsonl files of the toy sentiment task."""
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", make_sentences(400, seed=2)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", make_sentences(40, seed=3)),
    }


@pytest.fixture
def tiny_config(tmp_path, tiny_bert, sentiment_files) -> Path:
    """A complete config for a few-second run on the tiny model."""
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "task: text-classification\n"
        f"model: {tiny_bert}\n"
        "data:\n"
        f"  train: {sentiment_files['train']}\n"
        f"  validation: {sentiment_files['validation']}\n"
        "  max_length: 32\n"
        "train:\n"
        f"  output_dir: {tmp_path / 'run'}\n"
        "  epochs: 2\n"
        "  batch_size: 16\n"
        "  lr: 3.0e-3\n"
        "  tensorboard: false\n", encoding="utf-8")
    return path


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
#: a toy "language pair": every source word has one target word
TOY_DICTIONARY = {"red": "rouge", "blue": "bleu", "dog": "chien", "cat": "chat", "big": "grand", "small": "petit",
                  "runs": "court", "sleeps": "dort", "a": "un", "the": "le", "green": "vert", "eats": "mange"}


def make_pairs(count: int, seed: int = 0) -> list[dict]:
    """Rows {source, target}: target is the word-by-word toy translation of the source."""
    rng = random.Random(seed)
    words = list(TOY_DICTIONARY)
    rows = []
    for _ in range(count):
        source = rng.choices(words, k=rng.randint(2, 6))
        rows.append({"source": " ".join(source), "target": " ".join(TOY_DICTIONARY[w] for w in source)})
    return rows


def _byte_level_tokenizer(folder: Path, specials: list[str], **named) -> PreTrainedTokenizerFast:
    corpus = [" ".join(list(TOY_DICTIONARY) + list(TOY_DICTIONARY.values()))] * 20 + \
             ["Translate: system user assistant Assistant User"] * 5
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=420, special_tokens=specials, show_progress=False,
                                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named)
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_chat_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer and a ChatML chat template (EOS = <|im_end|>)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    fast = _byte_level_tokenizer(folder, ["<pad>", "<|im_start|>", "<|im_end|>"], pad_token="<pad>",
                                 eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    """A 1-layer T5 (encoder-decoder) with a byte-level BPE tokenizer that appends </s>."""
    folder = tmp_path_factory.mktemp("tiny-t5")
    fast = _byte_level_tokenizer(folder, ["<pad>", "</s>", "<unk>"], pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast.save_pretrained(folder)
    config = T5Config(vocab_size=len(fast), d_model=32, d_kv=16, num_heads=2, d_ff=64, num_layers=1, num_decoder_layers=1,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A 1-layer CLIP (32×32 images, 16-d projections) with a byte-level BPE tokenizer: a random image-text scorer."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    fast = _byte_level_tokenizer(folder, ["<pad>", "<|endoftext|>"], pad_token="<pad>", eos_token="<|endoftext|>")
    config = CLIPConfig(projection_dim=16, text_config=dict(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=64, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=None),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                           patch_size=8))
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=fast).save_pretrained(folder)
    return folder


class Crash(Exception):
    """Stands for a kill right after a checkpoint (tests of --resume)."""


def crash_after_checkpoint(monkeypatch, argv: list[str], when=lambda state: state.epoch == 1 and state.batches_done) -> None:
    """Run `lmforge ARGV` so that it stops (Crash) right after the first checkpoint whose loop state
    satisfies `when` (default: mid-way through epoch 2); checkpoints then work normally again."""
    import lmforge.train.loop as loop
    from lmforge.cli import main

    real_save = loop.save_checkpoint

    def save_then_crash(run_dir, state, *args, **kwargs):
        path = real_save(run_dir, state, *args, **kwargs)
        if when(state):
            raise Crash
        return path
    monkeypatch.setattr(loop, "save_checkpoint", save_then_crash)
    try:
        with pytest.raises(Crash):
            main(argv)
    finally:
        monkeypatch.setattr(loop, "save_checkpoint", real_save)


@pytest.fixture(scope="session")
def tiny_smol(tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer (a pre-tokenizer llama.cpp's converter knows), its GGUFs
    cached in a private lmforge cache."""
    from lmforge.models.gguf_export import find_converter
    from lmforge.models.packaged import locate_packaged

    try:
        find_converter()
        source = locate_packaged("smollm2-135m-instruct")
    except Exception as missing:  # noqa: BLE001 - optional pieces of a dev install
        pytest.skip(f"needs llama.cpp's converter and the packaged SmolLM2 tokenizer: {missing}")
    folder = tmp_path_factory.mktemp("tiny-smol")
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    return model, tokenizer


@pytest.fixture
def llama_cpp_cache(tmp_path_factory, monkeypatch):
    """lmforge's cache (GGUFs converted from test models) in the session's temp folder, shared by its tests."""
    monkeypatch.setenv("LMFORGE_CACHE", str(tmp_path_factory.getbasetemp() / "lmforge-cache"))
