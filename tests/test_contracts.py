"""Contract tests over the registries: every entry of STRATEGIES decodes, every entry of TASKS builds and names
its metrics — so a new entry is checked the day it is added."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.decode.generate import generate
from lmforge.decode.params import STRATEGY_FIELDS, DecodeParams
from lmforge.decode.strategies import STRATEGIES
from lmforge.tasks import TASKS, build_task

#: what a strategy needs besides its name to run on the tiny model (auto needs a fitted policy: tested with it)
NEEDS = {"speculative": lambda model_path: {"draft_model": model_path}, "sample": lambda _: {"seed": 0}}
GREEDY_EQUIVALENT = {"prompt_lookup", "speculative"}  # they give greedy's tokens, several a step
#: the fields a task cannot do without
TASK_NEEDS = {"prompt-classification": {"template": "Review: {text} Sentiment:", "verbalizer": {"neg": " bad", "pos": " good"}}}


def test_every_strategy_has_a_params_entry_and_only_auto_is_not_an_engine_strategy():
    assert set(STRATEGIES) | {"auto"} == set(STRATEGY_FIELDS)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_decodes_within_its_limits(name, tiny_chat_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    prompts = [tokenizer("a red dog")["input_ids"], tokenizer("the big cat eats a small dog")["input_ids"]]
    params = DecodeParams(strategy=name, **NEEDS.get(name, lambda _: {})(str(tiny_chat_llama)))
    out = generate(model, tokenizer, prompts, params, max_new_tokens=5)
    assert len(out) == len(prompts)
    for candidates in out:
        assert candidates and all(len(c.tokens) <= 5 and all(isinstance(t, int) for t in c.tokens) for c in candidates)
        assert all(torch.isfinite(torch.tensor(c.score)) for c in candidates)
    if name in GREEDY_EQUIVALENT:
        greedy = generate(model, tokenizer, prompts, DecodeParams(), max_new_tokens=5)
        assert [c[0].tokens for c in out] == [c[0].tokens for c in greedy]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_builds_from_its_name_and_names_its_metrics(name):
    params_model, _ = TASKS[name]
    required = {field for field, info in params_model.model_fields.items() if info.is_required() and field != "name"}
    assert required <= set(TASK_NEEDS.get(name, {})), f"say in TASK_NEEDS what {name} needs: {required}"
    task = build_task(params_model(name=name, **TASK_NEEDS.get(name, {})))
    assert task.default_metric in task.metric_names
    assert isinstance(task.loads_quantized, bool)
