"""report.json, report.md and the confusion-matrix PNG for a scored split."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.data.readers import write_jsonl
from lmforge.evaluate.plots import plot_confusion_matrix
from lmforge.files import atomic_write_text

#: numbers a report carries that describe the run, not the model's quality
RUN_FACTS = frozenset({"train_seconds"})


def headline(metrics: dict) -> list[str]:
    """The top-level numeric metrics, in the order the task reported them (run facts such as
    train_seconds left out)."""
    return [k for k, v in metrics.items() if isinstance(v, float) and k not in RUN_FACTS]


#: metrics key of a task's trivial baseline -> how the report names it
BASELINES = {"majority_baseline": "majority baseline", "copy_source_baseline": "copy-the-source baseline"}


def baseline_of(metrics: dict) -> tuple[str, dict]:
    """(name, scores) of the baseline the task reported, or ("", {})."""
    for key, name in BASELINES.items():
        if key in metrics:
            return name, metrics[key]
    return "", {}


def continual_lines(continual: dict | None) -> list[str]:
    """The old-task forgetting beside the new-task gain of a `tuning.continual` run."""
    if not continual:
        return []
    lines = ["", f"## Continual learning from `{continual['previous_run']}`", "",
             f"Replayed {continual['replayed_rows']} old rows; EWC λ = {continual['ewc']}. "
             f"Old task scored on its {continual['old_task_split']} split.", "",
             "| | metric | before | after | change |", "|---|---|---|---|---|"]
    for part in ("old_task", "new_task"):
        row = continual[part]
        for metric, before in row["before"].items():
            if metric == "within_old_labels":
                continue
            after = row["after"][metric]
            lines.append(f"| {part.replace('_', ' ')} | {metric} | {before:.4f} | {after:.4f} | {after - before:+.4f} |")
        for metric, after in row["after"].get("within_old_labels", {}).items():
            before = row["before"]["within_old_labels"][metric]
            lines.append(f"| {part.replace('_', ' ')}, choosing among old labels only | {metric} | {before:.4f} | "
                         f"{after:.4f} | {after - before:+.4f} |")
    return lines


def render_markdown(metrics: dict, title: str) -> str:
    """A short human report: headline numbers, the task's baseline, the per-class table, sample outputs."""
    name, baseline = baseline_of(metrics)
    lines = [f"# {title}", "", f"{metrics.get('count', '?')} examples.", "", f"| metric | model | {name or 'baseline'} |",
             "|---|---|---|"]
    for key in headline(metrics):
        base = f"{baseline[key]:.4f}" if key in baseline else ""
        lines.append(f"| {key} | {metrics[key]:.4f} | {base} |")
    if "label" in baseline:
        lines += ["", f"The majority baseline always predicts `{baseline['label']}`."]
    per_class = metrics.get("per_class")
    if per_class:
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for name, row in per_class.items():
            lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1-score']:.4f} | {int(row['support'])} |")
    if "confusion_matrix" in metrics:
        lines += ["", "![confusion matrix](confusion_matrix.png)"]
    lines += continual_lines(metrics.get("continual"))
    for sample in metrics.get("samples", []):
        lines += [""] + [f"- **{key}**: {value}" for key, value in sample.items()]
    return "\n".join(lines) + "\n"


def write_report(metrics: dict, out_dir: Path, title: str, stem: str = "report",
                 predictions: list[dict] | None = None) -> Path:
    """Write <stem>.json, <stem>.md, the confusion matrix (single-label tasks) and, when given, the
    predictions as predictions.jsonl (line N = example N of the scored split) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if predictions is not None:
        write_jsonl(out_dir / ("predictions.jsonl" if stem == "report" else f"{stem}_predictions.jsonl"), predictions)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(metrics, indent=2) + "\n")
    markdown = render_markdown(metrics, title)
    if "confusion_matrix" in metrics:
        png = "confusion_matrix.png" if stem == "report" else f"{stem}_confusion_matrix.png"
        plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], out_dir / png, title)
        markdown = markdown.replace("(confusion_matrix.png)", f"({png})")
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    return out_dir / f"{stem}.md"


def summary_line(metrics: dict, keys: int = 3) -> str:
    """One line: the first few headline metrics, with the task baseline's where it has them."""
    name, base = baseline_of(metrics)
    shown = headline(metrics)[:keys]
    line = "  ".join(f"{k} {metrics[k]:.4f}" for k in shown)
    baseline = ", ".join(f"{k} {base[k]:.4f}" for k in shown if isinstance(base.get(k), float))
    return line + (f"  ({name}: {baseline})" if baseline else "")
