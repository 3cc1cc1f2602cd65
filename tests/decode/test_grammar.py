"""Regex and JSON-schema constrained output (outlines-core) and the byte view of a tokenizer's vocabulary."""

from __future__ import annotations

import json

import jsonschema
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.decode.generate import generate
from lmforge.decode.grammar import schema_text, token_bytes
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest
from lmforge.errors import ConfigError

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "size": {"enum": [1, 2, 3]},
                                           "ok": {"type": "boolean"}}, "required": ["name", "size", "ok"]}


@pytest.fixture(scope="module")
def chat_model(tiny_chat_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama), AutoTokenizer.from_pretrained(tiny_chat_llama)


def test_token_bytes_reassemble_the_decoded_text(chat_model):
    _, tokenizer = chat_model
    pieces = token_bytes(tokenizer)
    ids = tokenizer("a red dog runs, the big green cat é!", add_special_tokens=False)["input_ids"]
    assert b"".join(pieces[i] for i in ids).decode("utf-8") == tokenizer.decode(ids)
    assert tokenizer.eos_token_id not in pieces


def test_json_schema_output_always_validates(chat_model, tmp_path):
    model, tokenizer = chat_model
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    prompts = [tokenizer(t)["input_ids"] for t in ("a red dog", "the cat", "green", "a story", "big", "runs fast")]
    for params in (DecodeParams(json_schema=str(schema_file)), DecodeParams(strategy="sample", seed=1, json_schema=json.dumps(SCHEMA)),
                   DecodeParams(strategy="beam", num_beams=2, json_schema=str(schema_file))):
        for [candidate] in generate(model, tokenizer, DecodeRequest(prompts, params, max_new_tokens=60)):
            jsonschema.validate(json.loads(tokenizer.decode(candidate.tokens)), SCHEMA)


def test_regex_output_matches(chat_model):
    model, tokenizer = chat_model
    outputs = generate(model, tokenizer, DecodeRequest([tokenizer("a dog")["input_ids"]] * 3,
                                                       DecodeParams(strategy="sample", seed=2,
                       regex=r"(red|green) (dog|cat)"), max_new_tokens=10))
    assert all(tokenizer.decode(c[0].tokens) in {"red dog", "red cat", "green dog", "green cat"} for c in outputs)


def test_bad_schema_and_several_constraints_are_config_errors():
    with pytest.raises(ConfigError, match="decode.json_schema"):
        schema_text("{not json")
    with pytest.raises(ValueError, match="one of choices, regex and json_schema"):
        DecodeParams(regex="a+", choices=["a"])
