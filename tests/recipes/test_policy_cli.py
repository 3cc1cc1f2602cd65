"""`lmforge policy`: log every arm on labelled prompts, fit and save the policy (usable by `generate --strategy
auto`), continue an interrupted log or refit a finished one, and one-line errors for bad flags."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from tests.conftest import make_pairs, write_jsonl


@pytest.fixture
def rows(tmp_path):
    return write_jsonl(tmp_path / "rows.jsonl", make_pairs(6, seed=3))


def policy(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["policy", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_policy_logs_every_arm_fits_and_decodes_with_strategy_auto(tiny_chat_llama, rows, tmp_path, capsys):
    out = tmp_path / "policy"
    base = [str(tiny_chat_llama), "--data", str(rows), "--output", str(out), "--arms", "greedy,beam2",
            "--max-new-tokens", "4"]
    code, printed, _ = policy(capsys, *base)
    assert code == 0 and "| auto (leave-one-out) |" in printed and f"--policy {out}" in printed
    logged = [json.loads(line) for line in (out / "arms.jsonl").read_text().splitlines()]
    assert [row["row"] for row in logged] == list(range(6))
    assert all(set(row[key]) == {"greedy", "beam2"} for row in logged for key in ("reward", "seconds", "tokens", "text"))
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == 6 and set(report["arms"]) == {"greedy", "beam2"}
    assert sum(report["policy_leave_one_out"]["usage"].values()) == 6
    assert report["oracle"]["mean_reward"] >= max(arm["mean_reward"] for arm in report["arms"].values())
    assert (out / "arms.png").stat().st_size > 0 and (out / "policy.safetensors").is_file()

    code, printed, _ = main(["generate", str(tiny_chat_llama), "--prompt", "red dog", "--max-new-tokens", "4",
                             "--strategy", "auto", "--policy", str(out)]), *capsys.readouterr()
    assert code == 0 and "(strategy auto chose " in printed

    # an interrupted log continues where it stopped; the rows already logged stay as they were
    lines = (out / "arms.jsonl").read_text().splitlines()
    (out / "arms.jsonl").write_text("\n".join(lines[:2]) + "\n")
    code, _, _ = policy(capsys, *base, "--resume")
    resumed = (out / "arms.jsonl").read_text().splitlines()
    assert code == 0 and len(resumed) == 6 and resumed[:2] == lines[:2]

    # a finished log refits at once with another cost weight
    code, _, _ = policy(capsys, *base, "--resume", "--cost-weight", "1000")
    assert code == 0 and (out / "arms.jsonl").read_text().splitlines() == resumed
    report = json.loads((out / "report.json").read_text())
    assert report["cost_weight"] == 1000.0 and json.loads((out / "policy.json").read_text())["cost_weight"] == 1000.0


@pytest.mark.parametrize(("extra", "message"), [
    (["--arms", "greedy"], "a policy chooses between at least 2 arms"),
    (["--arms", "greedy,beamX"], "--compare: unknown entry 'beamX'"),
    (["--reward", "chrf:heavy"], "--reward 'chrf:heavy'"),
    (["--reward", "nonsense"], "reward 'nonsense' is unknown"),
    (["--resume"], "holds no policy log"),
])
def test_bad_flags_are_one_line_errors(tiny_chat_llama, rows, tmp_path, capsys, extra, message):
    code, _, err = policy(capsys, str(tiny_chat_llama), "--data", str(rows), "--output", str(tmp_path / "p"), *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_existing_folder_is_kept_and_resume_checks_the_log_matches(tiny_chat_llama, rows, tmp_path, capsys):
    out = tmp_path / "policy"
    base = [str(tiny_chat_llama), "--data", str(rows), "--output", str(out), "--max-new-tokens", "3", "--limit", "2"]
    assert policy(capsys, *base)[0] == 0
    code, _, err = policy(capsys, *base)
    assert code == 2 and "exists; add --resume" in err
    code, _, err = policy(capsys, *base, "--resume", "--arms", "greedy,beam3")
    assert code == 2 and "logged with other arms" in err


def test_a_row_without_reference_names_its_line_and_not_a_config_setting(tiny_chat_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "rows.jsonl", [*make_pairs(2, seed=3), {"source": "no reference here"}])
    code, _, err = policy(capsys, str(tiny_chat_llama), "--data", str(data), "--output", str(tmp_path / "p"))
    assert code == 2 and f"{data}, line 3" in err and len(err.strip().splitlines()) == 1
    assert "fix the row" in err and "on_error" not in err  # the policy command has no config to set it in
    assert "give the reference there" in err
