"""PNG plots (matplotlib, the `plots` extra): without it, plots are skipped with one line, never an error."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lmforge.files import atomic_write_with

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (said once) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("lmforge: PNG plots are skipped: matplotlib is not installed (pip install 'lmforge[plots]')",
              file=sys.stderr)
        return None
    return plt


def drawn(plot: F) -> F:
    """`plot` when matplotlib is there; else a no-op returning None."""
    @functools.wraps(plot)
    def draw(*args: Any, **kwargs: Any) -> Any:
        return None if pyplot() is None else plot(*args, **kwargs)
    return draw  # type: ignore[return-value]


def _save(fig: Any, path: Path) -> None:
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        pyplot().close(fig)


@drawn
def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    """Rows are gold labels, columns predictions; cells show counts, colour shows row-normalised share."""
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = pyplot().subplots(figsize=(size + 1, size))
    totals = [max(sum(row), 1) for row in matrix]
    shares = [[cell / total for cell in row] for row, total in zip(matrix, totals, strict=True)]
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    for i, row in enumerate(matrix):
        for j, cell in enumerate(row):
            if cell:
                ax.text(j, i, str(cell), ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of gold row")
    _save(fig, path)
    return path


@drawn
def plot_history(log: Path, metric: str, path: Path) -> Path:
    """Training loss at every logged step and validation `metric` at every evaluation, by optimizer step, from
    a run's metrics.jsonl."""
    train: list[tuple[int, float]] = []
    validation: list[tuple[int, float]] = []
    for line in Path(log).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        scores = entry.get("validation") if isinstance(entry, dict) else None
        if isinstance(scores, dict) and isinstance(scores.get(metric), (int, float)):
            validation.append((scores["step"], scores[metric]))
        elif isinstance(entry, dict) and isinstance(entry.get("train_loss"), (int, float)) and "step" in entry:
            train.append((entry["step"], entry["train_loss"]))
    fig, left = pyplot().subplots(figsize=(7, 4))
    if train:
        left.plot(*zip(*train, strict=True), "-", color="tab:red", linewidth=1, label="train loss (running mean)")
    left.set_xlabel("optimizer step")
    left.set_ylabel("train loss", color="tab:red")
    if validation:
        right = left.twinx()
        right.plot(*zip(*validation, strict=True), "s-", color="tab:blue", label=f"validation {metric}")
        right.set_ylabel(f"validation {metric}", color="tab:blue")
    left.set_title("Training history")
    _save(fig, path)
    return path


@drawn
def plot_search_progress(values: list[float | None], metric: str, minimise: bool, path: Path) -> Path:
    """Each trial's score (pruned trials: their best epoch) and the best so far, by trial number."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    shown = [(n, v) for n, v in enumerate(values) if v is not None]
    ax.scatter([n for n, _ in shown], [v for _, v in shown], s=18, color="tab:gray", label="trial")
    best, best_line = None, []
    for value in values:
        if value is not None and (best is None or (value < best if minimise else value > best)):
            best = value
        best_line.append(best)
    ax.step(range(len(values)), best_line, where="post", color="tab:blue", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Hyper-parameter search")
    ax.legend()
    _save(fig, path)
    return path


@drawn
def plot_trend(trend: dict[str, list[tuple[int, float]]], alerts: list[dict], threshold: float, path: Path) -> Path:
    """Each topic's windowed negative rate against the input line, the threshold, and alert markers."""
    fig, ax = pyplot().subplots(figsize=(8, 4))
    for topic, points in sorted(trend.items()):
        lines, rates = zip(*points, strict=True)
        (curve,) = ax.plot(lines, rates, label=topic, linewidth=1.2)
        raised = [a for a in alerts if a["topic"] == topic and a["event"] == "alert"]
        ax.scatter([a["line"] for a in raised], [a["negative_rate"] for a in raised], marker="v", s=50,
                   color=curve.get_color(), zorder=3)
    ax.axhline(threshold, linestyle="--", color="tab:red", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("input line")
    ax.set_ylabel("negative rate (sliding window)")
    ax.set_title("Sentiment monitor (▼ = alert)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=6, frameon=False)
    _save(fig, path)
    return path


@drawn
def plot_rewards(metrics_path: Path, path: Path) -> Path | None:
    """Sequence-level training: mean reward (and KL to the reference, when logged) per logged step."""
    entries = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [e for e in entries if "mean_reward" in e]
    if not steps:
        return None
    fig, left = pyplot().subplots(figsize=(6, 4))
    left.plot([e["step"] for e in steps], [e["mean_reward"] for e in steps], "o-", color="tab:green", label="mean reward")
    left.set_xlabel("step")
    left.set_ylabel("mean reward", color="tab:green")
    if any(e.get("kl") for e in steps):
        right = left.twinx()
        right.plot([e["step"] for e in steps], [e.get("kl", 0.0) for e in steps], "s--", color="tab:purple")
        right.set_ylabel("KL to reference", color="tab:purple")
    left.set_title("Sequence-level training")
    _save(fig, path)
    return path


@drawn
def plot_preference(metrics_path: Path, path: Path) -> Path | None:
    """Preference tuning: the rewards of chosen and rejected completions per logged step (left) and the reward
    accuracy (right), as TRL names them."""
    entries = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    steps = [e for e in entries if "rewards/chosen" in e or "rewards/rejected" in e]
    if not steps:
        return None
    fig, left = pyplot().subplots(figsize=(6, 4))
    for key, style, colour in (("rewards/chosen", "o-", "tab:green"), ("rewards/rejected", "o-", "tab:red"),
                               ("rewards/margins", "--", "tab:blue")):
        points = [(e["step"], e[key]) for e in steps if key in e]
        if points:
            left.plot(*zip(*points, strict=True), style, color=colour, markersize=3, label=key.split("/")[1])
    left.set_xlabel("step")
    left.set_ylabel("reward (β × log-ratio)")
    left.legend(loc="upper left", fontsize=8)
    accuracy = [(e["step"], e["rewards/accuracies"]) for e in steps if "rewards/accuracies" in e]
    if accuracy:
        right = left.twinx()
        right.plot(*zip(*accuracy, strict=True), ":", color="tab:gray")
        right.set_ylabel("reward accuracy", color="tab:gray")
        right.set_ylim(0, 1.05)
    left.set_title("Preference tuning")
    _save(fig, path)
    return path


@drawn
def plot_reward_vs_seconds(points: dict[str, tuple[float, float]], path: Path, title: str) -> Path:
    """Each decoding as a point: mean seconds per row (x) against mean reward (y), labelled."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for name, (seconds, reward) in points.items():
        ax.scatter([seconds], [reward], s=40, marker="*" if name.startswith("auto") else "o")
        ax.annotate(name, (seconds, reward), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("mean seconds per row")
    ax.set_ylabel("mean reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return path
