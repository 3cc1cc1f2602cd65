"""Config problems name the key, the file and line (or the override), and suggest a fix."""

from __future__ import annotations

import pytest

from lmforge.config import load_config, parse_overrides, validate_config
from lmforge.errors import ConfigError
from lmforge.runs.schema import RunConfig


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config(RunConfig, load_config(path, list(overrides)))
    return str(caught.value)


def test_overrides_parse_numbers_booleans_and_lists():
    parsed = {key: value for key, value, _ in parse_overrides(["train.lr=3e-5", "train.epochs=2", "train.tensorboard=false",
                                                              "data.labels=[a, b]", "model.name=minilm-l6"])}
    assert parsed == {("train", "lr"): 3e-5, ("train", "epochs"): 2, ("train", "tensorboard"): False,
                      ("data", "labels"): ["a", "b"], ("model", "name"): "minilm-l6"}


def test_override_replaces_file_value(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrain:\n  lr: 1.0e-4\n")
    config = validate_config(RunConfig, load_config(path, ["train.lr=3e-5", "data.max_length=64"]))
    assert config.train.lr == 3e-5 and config.data.max_length == 64


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrian:\n  lr: 1\n")
    assert errors_of(path) == f"{path}, line 3: unknown key 'trian' (did you mean 'train'?)"


def test_unknown_nested_key_suggests(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrain:\n  learning_rat: 1\n  batch_sise: 4\n")
    message = errors_of(path)
    assert f"{path}, line 5: unknown key 'train.batch_sise' (did you mean 'batch_size'?)" in message.splitlines()
    assert message.splitlines()[0].startswith(f"{path}, line 4: unknown key 'train.learning_rat'")


def test_bad_range_from_override_names_the_override(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\n")
    assert errors_of(path, ["train.lr=-1"]) == "train.lr must be greater than 0, got -1 (from override 'train.lr=-1')"


def test_bad_type_names_key_and_line(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrain:\n  epochs: many\n")
    assert errors_of(path) == f"train.epochs must be a valid integer, unable to parse string as an integer, got 'many' ({path}, line 4)"


def test_all_problems_are_reported_together(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrain:\n  epochs: 0\n  precision: fp8\n")
    lines = errors_of(path).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("train.epochs must be greater than 0")
    assert lines[1].startswith("train.precision must be 'auto', 'fp32', 'bf16' or 'fp16'")


def test_unknown_task_lists_choices(tmp_path):
    from lmforge.tasks import TASKS

    path = write(tmp_path, "task: text-clasification\nmodel: m\n")
    assert errors_of(path) == (f"task 'text-clasification' is unknown; choose one of: {', '.join(sorted(TASKS))} "
                               f"(did you mean 'text-classification'?) ({path}, line 1)")


def test_missing_required_section(tmp_path):
    path = write(tmp_path, "task: text-classification\n")
    assert errors_of(path) == "model is required but not set"


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: [unclosed\ntrain:\n  lr: 1\n")
    with pytest.raises(ConfigError, match=rf"{path}, line \d+: invalid YAML"):
        load_config(path)


def test_missing_file_and_malformed_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.lr"])


def test_override_into_a_value_is_rejected(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: m\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="train.epochs is a value, not a section"):
        load_config(path, ["train.epochs.x=1"])


def test_shorthand_section_accepts_name_override(tmp_path):
    path = write(tmp_path, "task: text-classification\nmodel: first\n")
    config = validate_config(RunConfig, load_config(path, ["model.name=second", "model.allow_network=true"]))
    assert config.model.name == "second" and config.model.allow_network


def test_task_option_errors_name_the_task_key(tmp_path):
    path = write(tmp_path, "task:\n  name: token-classification\n  strid: 4\nmodel: m\n")
    assert errors_of(path) == f"{path}, line 3: unknown key 'task.strid' (did you mean 'stride'?)"
    path = write(tmp_path, "task:\n  name: token-classification\n  stride: -1\nmodel: m\n")
    assert errors_of(path) == f"task.stride must be greater than or equal to 0, got -1 ({path}, line 3)"


def test_override_text_with_a_colon_stays_text():
    from lmforge.config.loader import parse_overrides

    values = {key[-1]: value for key, value, _ in parse_overrides(
        ["task.prompt=Translate: {source}", 'task.stop_strings=["\\n"]', "data.labels={a: 1}"])}
    assert values == {"prompt": "Translate: {source}", "stop_strings": ["\n"], "labels": {"a": 1}}
