"""Installed without extras (`pip install lmforge`): training works (plots and TensorBoard skipped with a note);
`serve` and `search` say in one line which extra to install."""

from __future__ import annotations

import sys

import pytest

from lmforge.cli import main
from lmforge.evaluate.plots import pyplot


@pytest.fixture
def without(monkeypatch):
    """Make modules unimportable, as if their extra were not installed."""
    def block(*modules: str) -> None:
        for module in modules:
            for name in [n for n in sys.modules if n == module or n.startswith(module + ".")]:
                monkeypatch.delitem(sys.modules, name)
            monkeypatch.setitem(sys.modules, module, None)
        pyplot.cache_clear()
    yield block
    pyplot.cache_clear()


def test_training_without_plots_or_tensorboard_works_and_says_so_once(tiny_config, tmp_path, without, capsys):
    without("matplotlib", "tensorboard")
    run = tmp_path / "bare"
    assert main(["train", str(tiny_config), f"train.output_dir={run}", "train.epochs=1", "train.tensorboard=null"]) == 0
    err = capsys.readouterr().err
    assert err.count("pip install 'lmforge[plots]'") == 1
    assert (run / "model" / "model.safetensors").is_file() and (run / "report.md").is_file()
    assert not (run / "history.png").exists() and not (run / "tensorboard").exists()
    assert main(["train", str(tiny_config), f"train.output_dir={tmp_path / 'tb'}", "train.tensorboard=true"]) == 2
    assert "pip install 'lmforge[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize(("verb", "module", "extra"), [("serve", "fastapi", "serve"), ("serve", "uvicorn", "serve"),
                                                        ("search", "optuna", "search")])
def test_verbs_of_an_extra_name_it_in_one_line(verb, module, extra, tiny_config, without, capsys):
    without(module)
    assert main([verb, str(tiny_config)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"pip install 'lmforge[{extra}]'" in error and len(error.splitlines()) == 1


def test_the_serving_path_imports_neither_torch_nor_training_libraries():
    """A server holds no library it does not use: torch (~200 MB) loads with a model llama.cpp alone cannot serve
    (serve/light_model.py), peft (~190 MB) and scikit-learn (~100 MB) where an adapter is attached or a metric
    scored."""
    import subprocess

    code = ("import sys, lmforge.cli, lmforge.recipes.serve, lmforge.serve.light_model; "
            "print(sorted(m for m in ('torch', 'peft', 'sklearn', 'seqeval', 'nltk') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"
