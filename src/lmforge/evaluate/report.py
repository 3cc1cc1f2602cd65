"""report.json, report.md and the confusion-matrix PNG for a scored split."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.evaluate.plots import plot_confusion_matrix
from lmforge.files import atomic_write_text

HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1", "weighted_f1")


def render_markdown(metrics: dict, title: str) -> str:
    """A short human report: headline numbers, the majority baseline, and the per-class table."""
    lines = [f"# {title}", "", f"{metrics.get('count', '?')} examples.", "", "| metric | model | majority baseline |",
             "|---|---|---|"]
    baseline = metrics.get("majority_baseline", {})
    for key in HEADLINE:
        if key in metrics:
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
    return "\n".join(lines) + "\n"


def write_report(metrics: dict, out_dir: Path, title: str, stem: str = "report") -> Path:
    """Write <stem>.json, <stem>.md and (for single-label tasks) the confusion matrix into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(metrics, indent=2) + "\n")
    markdown = render_markdown(metrics, title)
    if "confusion_matrix" in metrics:
        png = "confusion_matrix.png" if stem == "report" else f"{stem}_confusion_matrix.png"
        plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], out_dir / png, title)
        markdown = markdown.replace("(confusion_matrix.png)", f"({png})")
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    return out_dir / f"{stem}.md"


def summary_line(metrics: dict) -> str:
    """One line: accuracy and macro-F1 against the majority baseline."""
    base = metrics.get("majority_baseline", {})
    return (f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
            f"(majority baseline: accuracy {base.get('accuracy', float('nan')):.4f}, macro-F1 {base.get('macro_f1', float('nan')):.4f})")
