"""`lmforge generate`: prompts and files in, text or jsonl out; streaming, explanations, strategy
comparison, and one-line errors for bad flags."""

from __future__ import annotations

import json

from lmforge.cli import main
from tests.conftest import write_jsonl


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prompt_stream_and_explain_agree(tiny_chat_llama, capsys):
    code, plain, _ = run(capsys, str(tiny_chat_llama), "--prompt", "a red dog", "--max-new-tokens", "6")
    assert code == 0 and plain.strip()
    code, streamed, _ = run(capsys, str(tiny_chat_llama), "--prompt", "a red dog", "--max-new-tokens", "6", "--stream")
    assert code == 0 and streamed.strip() == plain.strip()  # the deltas add up to the same text
    code, explained, _ = run(capsys, str(tiny_chat_llama), "--prompt", "a red dog", "--max-new-tokens", "6", "--explain", "2")
    lines = explained.splitlines()
    assert code == 0 and "logprob" in lines[1] and len(lines) == 2 + 6 + 1 and lines[-1].startswith("sum of log-probs")


def test_speculative_strategies_print_greedy_output(tiny_chat_llama, capsys):
    args = [str(tiny_chat_llama), "--prompt", "a red dog a red dog", "--max-new-tokens", "8"]
    _, greedy, _ = run(capsys, *args)
    for extra in (["--strategy", "prompt_lookup"], ["--strategy", "speculative", "--draft-model", str(tiny_chat_llama)]):
        code, out, _ = run(capsys, *args, *extra)
        assert code == 0 and out == greedy


def test_input_file_to_jsonl_with_several_beams(tiny_chat_llama, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"source": "a dog"}, {"source": "the big cat"}])
    out = tmp_path / "out" / "generated.jsonl"
    code, _, err = run(capsys, str(tiny_chat_llama), "--input", str(prompts), "--output", str(out), "--strategy", "beam",
                       "--num-beams", "3", "--num-return-sequences", "2", "--max-new-tokens", "5")
    assert code == 0 and "wrote 2 outputs" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a dog", "the big cat"]
    assert all(len(r["candidates"]) == 2 and r["generated"] == r["candidates"][0] for r in rows)


def test_compare_prints_one_line_per_strategy(tiny_chat_llama, capsys):
    code, out, _ = run(capsys, str(tiny_chat_llama), "--prompt", "a dog", "--max-new-tokens", "5",
                       "--compare", "greedy,beam3,topp0.9,minp0.1,contrastive,lookup", "--seed", "1")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ["greedy", "beam3", "topp0.9", "minp0.1", "contrastive", "lookup"]


def test_int8_weights_and_a_static_cache_from_the_command_line(tiny_chat_llama, capsys):
    args = [str(tiny_chat_llama), "--prompt", "a red dog", "--max-new-tokens", "6"]
    _, greedy, _ = run(capsys, *args)
    code, static, _ = run(capsys, *args, "--cache", "static")
    assert code == 0 and static == greedy
    code, int8, _ = run(capsys, *args, "--weights", "int8", "--cache", "static", "--no-compile")
    assert code == 0 and int8.strip()


def test_bad_flags_are_one_line_errors(tiny_chat_llama, tmp_path, capsys):
    cases = [
        (["--prompt", "a", "--num-beams", "3"], "num_beams does not apply to strategy 'greedy'"),
        (["--prompt", "a", "--compare", "greedy,beams"], "--compare: unknown entry 'beams'"),
        (["--prompt", "a", "--logit-bias", "x=1"], "--logit-bias x=1: write TOKEN_ID=BIAS"),
        (["--prompt", "a", "--prompt", "b", "--stream"], "--stream follows one prompt"),
        ([], "give at least one --prompt"),
        (["--prompt", "a", "--strategy", "beam", "--num-beams", "2", "--num-return-sequences", "3"], "cannot exceed"),
        (["--prompt", "a", "--compile"], "compile needs cache: static"),
        (["--prompt", "a", "--cache", "static", "--strategy", "beam"], "works with strategies greedy and sample"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, str(tiny_chat_llama), *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    code, _, err = run(capsys, str(tmp_path / "missing"), "--prompt", "a")
    assert code == 2 and "does not exist" in err


def test_strategy_auto_names_the_arm_it_chose(tiny_chat_llama, tmp_path, capsys):
    import torch
    from transformers import AutoConfig

    from lmforge.decode.policy import DecodingPolicy

    hidden = AutoConfig.from_pretrained(tiny_chat_llama).hidden_size
    weight = torch.zeros(hidden + 1, 2)
    weight[-1] = torch.tensor([0.0, 1.0])  # the bias alone: beam2 for every prompt
    DecodingPolicy({"greedy": {}, "beam2": {"strategy": "beam", "num_beams": 2}}, torch.zeros(hidden), torch.ones(hidden),
                   weight).save(tmp_path)
    args = [str(tiny_chat_llama), "--strategy", "auto", "--policy", str(tmp_path), "--max-new-tokens", "5"]
    code, out, _ = run(capsys, *args, "--prompt", "a red dog")
    assert code == 0 and "(strategy auto chose beam2)" in out
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"source": "a dog"}, {"source": "the big cat"}])
    code, out, _ = run(capsys, *args, "--input", str(prompts))
    assert code == 0 and [json.loads(line)["arm"] for line in out.splitlines()] == ["beam2", "beam2"]
