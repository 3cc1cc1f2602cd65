"""Contract tests over the registries: every entry of STRATEGIES decodes, every entry of TASKS builds and names
its metrics, every entry of TUNING validates, trains a tiny run and round-trips through save → load — so a new
entry is checked the day it is added."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lmforge.cli import main
from lmforge.decode.generate import generate
from lmforge.decode.params import STRATEGY_FIELDS, DecodeParams
from lmforge.decode.policy import PolicyFeatures
from lmforge.decode.policy_fit import fit_policy
from lmforge.decode.request import DecodeRequest
from lmforge.decode.strategies import STRATEGIES
from lmforge.methods.registry import TUNING, TuningParams, active_methods
from lmforge.tasks import TASKS, build_task


def fitted_policy(model_path: str, folder) -> dict:
    """strategy auto's knobs: a policy fitted on random features of the model's width, choosing greedy or beam."""
    hidden = AutoConfig.from_pretrained(model_path).hidden_size
    arms = {"greedy": {}, "beam2": {"strategy": "beam", "num_beams": 2}}
    fit_policy(torch.randn(4, hidden), torch.eye(2).repeat(2, 1), arms, reader=PolicyFeatures()).save(folder)
    return {"policy": str(folder)}


#: what a strategy needs besides its name to run on the tiny model: (model folder, an empty folder) -> knobs
NEEDS = {"speculative": lambda model_path, _: {"draft_model": model_path}, "sample": lambda *_: {"seed": 0},
         "auto": fitted_policy}
GREEDY_EQUIVALENT = {"prompt_lookup", "speculative"}  # they give greedy's tokens, several a step
#: the fields a task cannot do without
TASK_NEEDS = {"prompt-classification": {"template": "Review: {text} Sentiment:", "verbalizer": {"neg": " bad", "pos": " good"}}}


def test_every_strategy_owns_its_knobs_and_either_decodes_an_engine_batch_or_wraps_the_others():
    assert set(STRATEGIES) == set(STRATEGY_FIELDS) == set(DecodeParams.model_fields["strategy"].annotation.__args__)
    for name, strategy in STRATEGIES.items():
        assert (strategy.decode is None) != (strategy.wraps is None), name
        assert set(strategy.params.model_fields) <= set(DecodeParams.model_fields)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_decodes_within_its_limits(name, tiny_chat_llama, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    prompts = [tokenizer("a red dog")["input_ids"], tokenizer("the big cat eats a small dog")["input_ids"]]
    params = DecodeParams(strategy=name, **NEEDS.get(name, lambda *_: {})(str(tiny_chat_llama), tmp_path))
    out = generate(model, tokenizer, DecodeRequest(prompts, params, max_new_tokens=5))
    assert len(out) == len(prompts)
    for candidates in out:
        assert candidates and all(len(c.tokens) <= 5 and all(isinstance(t, int) for t in c.tokens) for c in candidates)
        assert all(torch.isfinite(torch.tensor(c.score)) for c in candidates)
    if name in GREEDY_EQUIVALENT:
        greedy = generate(model, tokenizer, DecodeRequest(prompts, DecodeParams(), max_new_tokens=5))
        assert [c[0].tokens for c in out] == [c[0].tokens for c in greedy]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_builds_from_its_name_and_names_its_metrics(name):
    params_model, _ = TASKS[name]
    required = {field for field, info in params_model.model_fields.items() if info.is_required() and field != "name"}
    assert required <= set(TASK_NEEDS.get(name, {})), f"say in TASK_NEEDS what {name} needs: {required}"
    task = build_task(params_model(name=name, **TASK_NEEDS.get(name, {})))
    assert task.default_metric in task.metric_names
    assert isinstance(task.loads_quantized, bool)


#: methods that train generation tasks only: their tiny runs are in tests/methods/test_sequence_training.py,
#: test_strategy_network.py and test_preference.py; here they must refuse the classification run in one line
GENERATION_ONLY = {"sequence", "strategy_network", "preference"}


@pytest.mark.parametrize("name", sorted(TUNING))
def test_every_tuning_method_owns_its_fields_and_its_example_switches_it_on_alone(name):
    method = TUNING[name]
    assert method.fields and method.example, f"{name}: declare the tuning: fields it owns and an example setting"
    assert set(method.example) <= set(method.fields)
    assert [type(m) for m in active_methods(TuningParams(**method.example))] == [method]
    assert not any(m.enabled(TuningParams()) for m in TUNING.values())  # the default section trains plainly


def test_the_tuning_section_is_the_union_of_the_methods_fields():
    owned = [field for method in TUNING.values() for field in method.fields]
    assert sorted(owned) == sorted(TuningParams.model_fields) and len(owned) == len(set(owned))


def with_tuning(config_path, tuning: dict, run) -> str:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["tuning"], config["train"]["output_dir"], config["train"]["epochs"] = tuning, str(run), 1
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", sorted(TUNING))
def test_every_tuning_method_trains_a_tiny_run_that_reloads(name, tiny_config, tmp_path, capsys):
    example = json.loads(json.dumps(TUNING[name].example))
    if name == "continual":  # it goes on from a trained run
        previous = tmp_path / "previous"
        assert main(["train", with_tuning(tiny_config, {}, previous)]) == 0
        example["continual"]["previous_run"] = str(previous)
    run = tmp_path / "run"
    code = main(["train", with_tuning(tiny_config, example, run)])
    err = capsys.readouterr().err
    if name in GENERATION_ONLY:
        assert code == 2 and f"tuning.{name}" in err and "Traceback" not in err
        return
    assert code == 0, err
    report = json.loads((run / "report.json").read_text())
    assert 0.0 <= report["accuracy"] <= 1.0
    assert main(["evaluate", str(run)]) == 0  # what it saved loads back
    assert f"accuracy {report['accuracy']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(n for n, method in TUNING.items() if method.reads_rows_whole))
def test_methods_that_read_the_rows_whole_refuse_streamed_data_in_one_line(name, tiny_config, tmp_path, capsys):
    example = json.loads(json.dumps(TUNING[name].example))
    config = with_tuning(tiny_config, example, tmp_path / "run")
    assert main(["train", config, "data.streaming=true"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: data.streaming works without tuning.{name} (it reads the "
                                               "training rows whole); set data.streaming=false")
