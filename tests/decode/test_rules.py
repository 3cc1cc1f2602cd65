"""Decoding rules against HF's logits processors on fixed scores, and the rules' effects on outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation import logits_process as hf

from lmforge.decode import rules
from lmforge.decode.generate import generate
from lmforge.decode.params import DecodeParams
from lmforge.decode.request import DecodeRequest

PAIRS = [
    (rules.top_k(5), hf.TopKLogitsWarper(5)),
    (rules.top_k(1, keep=3), hf.TopKLogitsWarper(1, min_tokens_to_keep=3)),
    (rules.top_p(0.9), hf.TopPLogitsWarper(0.9)),
    (rules.top_p(0.3, keep=2), hf.TopPLogitsWarper(0.3, min_tokens_to_keep=2)),
    (rules.min_p(0.1), hf.MinPLogitsWarper(0.1)),
    (rules.typical_p(0.8), hf.TypicalLogitsWarper(0.8)),
    (rules.temperature(0.7), hf.TemperatureLogitsWarper(0.7)),
    (rules.repetition_penalty(1.3), hf.RepetitionPenaltyLogitsProcessor(1.3)),
    (rules.no_repeat_ngram(2), hf.NoRepeatNGramLogitsProcessor(2)),
]


@pytest.mark.parametrize(("ours", "reference"), PAIRS, ids=lambda x: type(x).__name__ if not callable(x) else "")
def test_rules_match_hf_processors_on_fixed_scores(ours, reference):
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 50, generator=generator) * 3
    tokens = torch.randint(0, 50, (4, 9), generator=generator)
    tokens[0, -3:] = tokens[0, :3]  # a repeated bigram for no_repeat_ngram
    expected = reference(tokens, scores.clone())
    got = ours(tokens, scores.clone())
    assert torch.equal(torch.isinf(got), torch.isinf(expected))  # the same filtered support
    assert torch.allclose(got[~torch.isinf(got)], expected[~torch.isinf(expected)])


def test_bad_words_logit_bias_and_min_new_tokens():
    scores = torch.zeros(2, 10)
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    banned = rules.bad_words([[3, 7], [9]])(tokens, scores)
    assert torch.isinf(banned[0, 7]) and not torch.isinf(banned[1, 7])  # 7 only after 3
    assert torch.isinf(banned[:, 9]).all()
    biased = rules.logit_bias({4: 2.5, 5: float("-inf")})(tokens, scores)
    assert biased[0, 4] == 2.5 and torch.isinf(biased[1, 5])
    early = rules.min_new_tokens(2, prompt_length=2, stop_ids=[0])
    assert torch.isinf(early(tokens, scores)[:, 0]).all()  # 1 new token so far
    assert not torch.isinf(early(torch.cat([tokens, tokens[:, :1]], 1), scores)).any()


def test_rules_reject_impossible_values():
    for make, value in ((rules.top_k, 0), (rules.top_p, 1.5), (rules.temperature, 0.0), (rules.min_p, -1.0)):
        with pytest.raises(ValueError):
            make(value)


@pytest.fixture(scope="module")
def chat_model(tiny_chat_llama):
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama), AutoTokenizer.from_pretrained(tiny_chat_llama)


def test_seeded_sampling_repeats_and_differs_across_seeds(chat_model):
    model, tokenizer = chat_model
    prompts = [tokenizer("a red dog")["input_ids"]] * 4

    def draw(seed: int) -> list[list[int]]:
        return [c[0].tokens for c in generate(model, tokenizer, DecodeRequest(prompts,
                                                                              DecodeParams(strategy="sample", seed=seed),
                                                                              max_new_tokens=10))]
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert len({tuple(t) for t in draw(1)}) > 1  # rows draw independently


def test_stop_strings_end_rows_and_min_new_tokens_holds_off_eos(chat_model):
    model, tokenizer = chat_model
    prompt = [tokenizer("the big green cat")["input_ids"]]
    free = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(), max_new_tokens=12))[0][0]
    stop = tokenizer.decode(free.tokens[:3])
    stopped = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(), max_new_tokens=12,
                                                       stop_strings=[stop]))[0][0]
    assert stopped.tokens == free.tokens[:len(stopped.tokens)] and len(stopped.tokens) <= 3
    assert stop in tokenizer.decode(stopped.tokens)
    eos = tokenizer.eos_token_id
    bias = DecodeParams(logit_bias={eos: 100.0})
    assert generate(model, tokenizer, DecodeRequest(prompt, bias, max_new_tokens=5))[0][0].tokens == []  # EOS at once
    held = DecodeParams(logit_bias={eos: 100.0}, min_new_tokens=3)
    assert len(generate(model, tokenizer, DecodeRequest(prompt, held, max_new_tokens=5))[0][0].tokens) == 3


def test_no_repeat_ngram_and_bad_words_shape_outputs(chat_model):
    model, tokenizer = chat_model
    prompt = [tokenizer("a")["input_ids"]]
    tokens = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(no_repeat_ngram_size=2),
                                                      max_new_tokens=30))[0][0].tokens
    sequence = prompt[0] + tokens
    bigrams = list(zip(sequence, sequence[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))
    free = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(), max_new_tokens=10))[0][0].tokens
    word = tokenizer.decode(free[:1]).strip()
    banned = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(bad_words=[word]),
                                                      max_new_tokens=10))[0][0].tokens
    assert word not in tokenizer.decode(banned).split()


def test_explain_records_logprobs_with_alternatives(chat_model):
    model, tokenizer = chat_model
    [[candidate]] = generate(model, tokenizer, DecodeRequest([tokenizer("a red")["input_ids"]],
                                                             DecodeParams(explain=3), max_new_tokens=4))
    assert len(candidate.steps) == len(candidate.tokens) == 4
    first = candidate.steps[0]
    assert first["top"][0][0] == first["token"] and len(first["top"]) == 3  # greedy picks the best
    assert abs(candidate.score - sum(s["logprob"] for s in candidate.steps) / 4) < 1e-5


def test_beam_explain_shows_the_path_behind_each_score(chat_model):
    model, tokenizer = chat_model
    params = DecodeParams(strategy="beam", num_beams=3, num_return_sequences=2, length_penalty=0.7, explain=1)
    for candidate in generate(model, tokenizer, DecodeRequest([tokenizer("a red")["input_ids"]], params,
                                                              max_new_tokens=5))[0]:
        total = sum(step["logprob"] for step in candidate.steps)
        assert abs(total / len(candidate.steps) ** 0.7 - candidate.score) < 1e-4
        assert [s["token"] for s in candidate.steps][: len(candidate.tokens)] == candidate.tokens


def test_params_reject_knobs_of_another_strategy():
    with pytest.raises(ValueError, match="num_beams does not apply to strategy 'greedy'"):
        DecodeParams(num_beams=3)
    with pytest.raises(ValueError, match="top_p"):
        DecodeParams(strategy="beam", top_p=0.9)
    with pytest.raises(ValueError, match="cannot exceed"):
        DecodeParams(strategy="beam", num_beams=2, num_return_sequences=3)
    assert DecodeParams(strategy="sample", top_p=0.9, num_return_sequences=2).top_p == 0.9


def test_closed_choices_allow_only_whole_choices():
    rule = rules.closed_choices([[5, 6], [5, 7, 8], [9]], prompt_length=2, stop_ids=[0])
    scores = torch.zeros(3, 12)
    tokens = torch.tensor([[1, 1, 5, 5], [1, 1, 5, 6], [1, 1, 3, 3]])[:, :3]  # generated: [5], [5], [3]
    allowed = ~torch.isinf(rule(tokens, scores))
    assert allowed[0].nonzero().flatten().tolist() == [6, 7]
    start = ~torch.isinf(rule(torch.tensor([[1, 1]]), torch.zeros(1, 12)))
    assert start[0].nonzero().flatten().tolist() == [5, 9]
    done = ~torch.isinf(rule(torch.tensor([[1, 1, 5, 6]]), torch.zeros(1, 12)))
    assert done[0].nonzero().flatten().tolist() == [0]  # a complete choice may only stop


def test_every_output_is_one_of_the_choices(chat_model):
    model, tokenizer = chat_model
    prompts = [tokenizer(t)["input_ids"] for t in ("a red dog", "the cat", "green", "a big story about a dog")]
    labels = ["positive", "negative", "neutral mood"]
    for params in (DecodeParams(choices=labels), DecodeParams(strategy="sample", choices=labels, seed=0),
                   DecodeParams(strategy="beam", num_beams=3, choices=labels)):
        outputs = generate(model, tokenizer, DecodeRequest(prompts, params, max_new_tokens=12))
        assert all(tokenizer.decode(c[0].tokens) in labels for c in outputs)


def test_bf16_decoding_weights_leave_the_model_as_it_was(chat_model):
    model, tokenizer = chat_model
    prompt = [tokenizer("a red dog")["input_ids"]]
    fp32 = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(), max_new_tokens=6))[0][0].tokens
    out = generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(weights="bf16"), max_new_tokens=6))[0][0].tokens
    assert len(out) == 6
    assert next(model.parameters()).dtype == torch.float32 and type(model.lm_head) is torch.nn.Linear
    assert generate(model, tokenizer, DecodeRequest(prompt, DecodeParams(), max_new_tokens=6))[0][0].tokens == fp32
