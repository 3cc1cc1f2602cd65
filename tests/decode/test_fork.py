"""`Engine.fork`: strategies continue from one shared prefill (strategy auto reads its features there) and give
what they give from a prefill of their own; `prompt_states` is the policy's top-layer feature."""

from __future__ import annotations

import pytest
import torch

from lmforge.decode.engine import Engine
from lmforge.decode.policy import prompt_features
from lmforge.decode.strategies.beam import beam_search
from lmforge.decode.strategies.contrastive import contrastive_search
from lmforge.decode.strategies.sampling import argmax_choice, token_by_token
from tests.decode.conftest import PAD
from tests.decode.test_parity import random_prompts

STRATEGIES = {
    "greedy": lambda engine, stops: [c.tokens for c in token_by_token(engine, argmax_choice, [], 8, stops)],
    "beam": lambda engine, stops: [c[0].tokens for c in beam_search(engine, [], 8, stops, num_beams=3)],
    "contrastive": lambda engine, stops: [c.tokens for c in contrastive_search(engine, [], 8, stops, top_k=3)],
}


@pytest.mark.parametrize("name", ["llama", "t5"])
def test_forks_of_one_prefill_decode_as_their_own_prefills_would(name, request):
    model, stops = request.getfixturevalue(name)
    prompts = random_prompts(count=9, seed=3)
    shared = Engine(model, prompts, PAD)
    shared.keep_hidden = True
    logits = shared.prefill()
    states = shared.prompt_states()
    assert torch.allclose(states, prompt_features(model, prompts, PAD), atol=1e-5)
    groups = {"greedy": [0, 3, 4, 8], "beam": [1, 5], "contrastive": [2, 6, 7]}
    for strategy, rows in [*groups.items(), ("greedy", list(range(9)))]:  # the last: every row again
        forked = STRATEGIES[strategy](shared.fork(torch.tensor(rows), logits[rows]), stops)
        alone = STRATEGIES[strategy](Engine(model, [prompts[r] for r in rows], PAD), stops)
        assert forked == alone, strategy
    assert shared.rows == 9 and shared.length == shared.prompt_length  # the forks left it as it was


def test_prompt_states_need_the_prefill(llama):
    model, _ = llama
    engine = Engine(model, [[5, 6], [7]], PAD)
    with pytest.raises(RuntimeError, match="keep_hidden"):
        engine.prompt_states()
    with pytest.raises(ValueError, match="prefilled"):
        engine.fork(torch.tensor([0]), torch.zeros(1, 3))
