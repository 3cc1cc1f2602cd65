"""The numpy rules of the batch on llama.cpp alone give the torch rules' scores, and it takes only what they run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmforge.decode import rules as R
from lmforge.decode.light_batch import explain_row, light_rules, log_softmax, runs_light
from lmforge.decode.params import DecodeParams
from lmforge.decode.strategies.sampling import explain_step


class _Rows:
    """What a numpy rule reads of a request's rows."""

    def __init__(self, taken: int, generated: list[list[int]]):
        self.taken, self.alive = taken, list(range(len(generated)))
        self.outputs = type("Outputs", (), {"generated": generated})()


@pytest.mark.parametrize("knobs", [
    {"strategy": "sample", "temperature": 0.7},
    {"strategy": "sample", "top_k": 5},
    {"strategy": "sample", "top_p": 0.8},
    {"strategy": "sample", "min_p": 0.2},
    {"strategy": "sample", "temperature": 1.3, "top_k": 40, "top_p": 0.9, "min_p": 0.05},
    {"strategy": "greedy", "logit_bias": {3: 5.0, 7: -100.0, 11: 2.5}},
    {"strategy": "greedy", "min_new_tokens": 4},
], ids=lambda knobs: "-".join(knobs) + "")
def test_numpy_rules_give_the_torch_rules_scores(knobs):
    from lmforge.decode.generate import build_rules

    torch.manual_seed(0)
    scores = torch.randn(3, 50) * 3
    params = DecodeParams(**knobs)
    stop_ids = [1, 2]
    prompt = torch.zeros(3, 4, dtype=torch.long)
    generated = torch.ones(3, 2, dtype=torch.long)  # two tokens taken: min_new_tokens still bans the stops
    vocabulary = range(50)  # what build_rules reads of a tokenizer here: its length (logit_bias ids)
    expected = R.apply_rules(build_rules(params, vocabulary, 4, stop_ids), torch.cat([prompt, generated], 1), scores)
    found = scores.numpy()
    for rule in light_rules(params, None, stop_ids):
        found = rule(found, _Rows(2, [[5, 5]] * 3))
    assert np.array_equal(np.isinf(found), torch.isinf(expected).numpy())
    finite = ~np.isinf(found)
    assert np.allclose(found[finite], expected.numpy()[finite], atol=1e-5)


def test_an_automaton_rule_allows_only_its_tokens_and_the_stops_where_it_may_end():
    def allowed(generated: tuple[int, ...]) -> tuple[list[int], bool]:
        return ([4, 5], False) if not generated else ([6], True)

    automaton = type("Automaton", (), {"allowed": staticmethod(allowed)})()
    params = DecodeParams(regex="a")
    (rule,) = light_rules(params, automaton, [1])
    found = rule(np.zeros((2, 8), dtype=np.float32), _Rows(1, [[], [4]]))
    assert np.flatnonzero(np.isfinite(found[0])).tolist() == [4, 5]
    assert np.flatnonzero(np.isfinite(found[1])).tolist() == [1, 6]


def test_log_probs_and_their_alternatives_are_the_torch_steps():
    torch.manual_seed(1)
    logits = torch.randn(2, 30)
    expected = logits.log_softmax(-1)
    assert np.allclose(log_softmax(logits.numpy()), expected.numpy(), atol=1e-6)
    light = explain_row(7, float(expected[0, 7]), log_softmax(logits.numpy())[0], 3)
    torch_step = explain_step(7, float(expected[0, 7]), expected[0], 3)
    assert [t for t, _ in light["top"]] == [t for t, _ in torch_step["top"]]


@pytest.mark.parametrize(("knobs", "light"), [
    ({}, True),
    ({"strategy": "sample", "temperature": 0.5, "top_p": 0.9, "seed": 3, "num_return_sequences": 2}, True),
    ({"json_schema": '{"type": "object"}', "explain": 2, "logit_bias": {1: -100.0}, "min_new_tokens": 2}, True),
    ({"strategy": "beam", "num_beams": 2}, False),
    ({"strategy": "contrastive"}, False),
    ({"repetition_penalty": 1.2}, False),
    ({"strategy": "sample", "typical_p": 0.9}, False),
    ({"bad_words": ["x"]}, False),
    ({"engine": "torch"}, False),
])
def test_the_batch_takes_what_its_rules_run(knobs, light):
    assert runs_light(DecodeParams(**knobs)) is light
