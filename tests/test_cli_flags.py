"""Every verb's flags come from its params model: one per field, typed, checked and described by it."""

from __future__ import annotations

import argparse
import re

import pytest
from pydantic import BaseModel

from lmforge.cli import build_parser
from lmforge.cli_flags import add_flags, cli
from lmforge.cli_params import VERB_ARGS


class Toy(BaseModel):
    source: str = cli(..., "where from", positional=True)
    rest: list[str] = cli([], "key=value pairs", positional=True)
    count: int = cli(3, "how many", gt=0)
    port: int = cli(8000, "port", ge=1, le=65535)
    word: list[str] | None = cli(None, "a word (repeatable)", metavar="TEXT")
    shuffled: bool = cli(True, "shuffle (default on)", negatable=True)
    verbose: bool = cli(False, "say more")
    mode: str = cli("fast", "how", pattern="^(fast|slow)$")
    rate: float = cli(0.5, "a rate", gt=0)


class Failed(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Failed(message)


def toy_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="toy")
    add_flags(parser, Toy)
    return parser


def test_fields_become_typed_arguments_with_their_defaults():
    parsed = toy_parser().parse_args(["here", "a=1", "--count", "5", "--word", "x", "--word", "y", "--no-shuffled"])
    assert vars(parsed) == {"source": "here", "rest": ["a=1"], "count": 5, "port": 8000, "word": ["x", "y"],
                            "shuffled": False, "verbose": False, "mode": "fast", "rate": 0.5}
    assert Toy(**vars(parsed)).count == 5  # what argparse produced validates as the model


@pytest.mark.parametrize(("argv", "message"), [
    (["here", "--count", "0"], "argument --count: give a number above 0, not '0'"),
    (["here", "--count", "2.5"], "argument --count: give a whole number, not '2.5'"),
    (["here", "--port", "70000"], "argument --port: give a number of at most 65535, not '70000'"),
    (["here", "--mode", "medium"], "argument --mode: String should match pattern"),
    (["here", "--count", "3.0"], "argument --count: give a whole number, not '3.0'"),
    (["here", "--rate", "inf"], "argument --rate: give a finite number, not 'inf'"),
    (["here", "--rate", "0"], "argument --rate: give a number above 0, not '0'"),
])
def test_values_are_checked_by_the_field_at_parse_time(argv, message):
    with pytest.raises(Failed, match=re.escape(message)):
        toy_parser().parse_args(argv)


def test_help_shows_each_description_and_each_default_once():
    text = toy_parser().format_help()
    assert "how many (default 3)" in text and "shuffle (default on)" in text and text.count("default") == 5
    for verb, parser in next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        helps = {action.dest: action.help or "" for action in parser._actions}
        for name in VERB_ARGS[verb].model_fields:
            assert name in helps, (verb, name)
            assert helps[name].count("default") <= 1, (verb, name, helps[name])


def test_every_flag_of_the_cli_comes_from_a_params_model():
    from lmforge.decode.params import DecodeParams
    from lmforge.serve.limits import RequestLimits

    derived = {"help", "version"} | set(DecodeParams.model_fields) | {f for f in RequestLimits.__dataclass_fields__}
    for verb, parser in next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        for action in parser._actions:
            assert action.dest in derived | set(VERB_ARGS[verb].model_fields), (verb, action.dest)


def test_help_and_the_decode_section_load_no_model_code():
    """`lmforge --help` and reading a `decode:` section import neither torch nor transformers (a strategy's Params
    live in decode/strategy_params.py, its decoding next to the engine)."""
    import subprocess
    import sys

    script = ("import sys; from lmforge.cli import main; import lmforge.decode.params\n"
              "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "heavy = sorted(n for n in ('torch', 'transformers', 'peft') if n in sys.modules)\n"
              "print('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-500:] + done.stderr[-500:]
