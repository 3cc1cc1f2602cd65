"""`lmforge monitor`: input lines, sliding windows that alert and recover per topic, and the CLI end to end."""

from __future__ import annotations

import io
import json
import random

import pytest

from lmforge.cli import main
from lmforge.errors import ConfigError, DataError
from lmforge.recipes.monitor import Item, Monitor, negative_label, parse_line, read_batches
from tests.conftest import make_sentences


def test_input_lines_plain_tabbed_and_json(capsys):
    assert parse_line("a fine day\n", 1, "s") == Item(1, "all", "a fine day")
    assert parse_line("bank\tshares fell\n", 2, "s") == Item(2, "bank", "shares fell")
    assert parse_line('{"text": "up again", "topic": "tech"}', 3, "s") == Item(3, "tech", "up again")
    assert parse_line("   \n", 4, "s") is None
    with pytest.raises(DataError, match=r"feed.txt, line 5: not valid JSON"):
        parse_line('{"text": ', 5, "feed.txt")
    with pytest.raises(DataError, match='line 6: a JSON line needs a non-empty "text"'):
        parse_line('{"topic": "x"}', 6, "feed.txt")
    batches = list(read_batches(io.StringIO('a\n\nb\n{"text": \nc\n'), "feed.txt", size=2))
    assert [[i.text for i in b] for b in batches] == [["a", "b"], ["c"]]  # the broken line 4 is skipped
    assert "feed.txt, line 4: not valid JSON" in capsys.readouterr().err


def test_a_topic_alerts_once_when_its_window_crosses_and_recovers_below():
    watcher = Monitor(window=4, threshold=0.5, min_count=2)  # recovers below 0.4
    verdicts = [False, True, True, True, False, False, True, False, False, False]
    events = [watcher.observe(Item(n, "bank", f"t{n}"), negative, "neg" if negative else "pos")
              for n, negative in enumerate(verdicts, start=1)]
    # window rates: 0, .5 (alert), .67, .75, .75, .5, .5 (no flapping), .25 (recovered), .25, 0
    assert [e["event"] if e else None for e in events] == [None, "alert", None, None, None, None, None, "recovered",
                                                           None, None]
    assert events[1]["negative_rate"] == 0.5 and events[1]["window"] == 2
    other = watcher.observe(Item(9, "tech", "x"), True, "neg")  # its own window: below min_count
    assert other is None and watcher.windows["tech"].alerting is False
    assert [t for t, _ in watcher.trend["bank"]] == list(range(1, 11))


def test_bad_settings_and_labels_are_named():
    with pytest.raises(ConfigError, match="--threshold"):
        Monitor(10, 1.5, 1)
    with pytest.raises(ConfigError, match="--recover-below"):
        Monitor(10, 0.5, 1, recover_below=0.7)
    assert negative_label(["neg", "pos"], None) == "neg"
    with pytest.raises(ConfigError, match="--negative-label"):
        negative_label(["bad", "neg"], None)
    with pytest.raises(ConfigError, match="'sad' is not one of"):
        negative_label(["neg", "pos"], "sad")


def test_monitor_cli_alerts_on_a_negative_burst_and_writes_a_plot(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "train.epochs=4"]) == 0
    capsys.readouterr()
    rng = random.Random(0)
    rows = make_sentences(400, seed=7)
    positive = [r["text"] for r in rows if r["label"] == "pos"]
    negative = [r["text"] for r in rows if r["label"] == "neg"]
    stream = ["shop\t" + rng.choice(positive) for _ in range(30)] + ["shop\t" + rng.choice(negative) for _ in range(30)] \
        + ["shop\t" + rng.choice(positive) for _ in range(30)] + [json.dumps({"text": t, "topic": "news"}) for t in positive[:20]]
    feed = tmp_path / "feed.txt"
    feed.write_text("\n".join(stream) + "\n", encoding="utf-8")
    code = main(["monitor", str(tmp_path / "run"), "--input", str(feed), "--window", "10", "--threshold", "0.6",
                 "--alerts", str(tmp_path / "alerts.jsonl"), "--plot", str(tmp_path / "trend.png"),
                 "--predictions", str(tmp_path / "labels.jsonl")])
    out, err = capsys.readouterr()
    assert code == 0
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["event"], a["topic"]) for a in alerts] == [("alert", "shop"), ("recovered", "shop")]
    assert 30 < alerts[0]["line"] <= 45 and 60 < alerts[1]["line"] <= 75  # during the burst, after it
    assert out.splitlines()[0].startswith("ALERT topic=shop negative_rate=")
    assert "110 texts over 2 topics, 1 alerts" in err
    assert (tmp_path / "trend.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 110


def test_monitor_cli_refuses_a_missing_input(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config)]) == 0
    capsys.readouterr()
    assert main(["monitor", str(tmp_path / "run"), "--input", str(tmp_path / "nope.txt")]) != 0
    assert "nope.txt: no such file" in capsys.readouterr().err
