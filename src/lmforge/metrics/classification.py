"""Classification metrics over label indices, wrapping scikit-learn (imported when first scored: ~100 MB a
serving process never needs)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def single_label_metrics(predicted: list[int], gold: list[int], labels: list[str]) -> dict:
    """Accuracy, macro/micro P/R/F1, a per-class report and the confusion matrix.

    >>> single_label_metrics([0, 1], [0, 0], ["neg", "pos"])["accuracy"]
    0.5
    """
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    indices = list(range(len(labels)))
    result: dict = {"accuracy": float(accuracy_score(gold, predicted)), "count": len(gold)}
    result.update(_averages(gold, predicted, indices))
    report = classification_report(gold, predicted, labels=indices, target_names=labels, output_dict=True, zero_division=0)
    result["per_class"] = {name: {k: float(v) for k, v in report[name].items()} for name in labels}
    result["confusion_matrix"] = confusion_matrix(gold, predicted, labels=indices).tolist()
    result["labels"] = list(labels)
    return result


def multi_label_metrics(predicted: np.ndarray, gold: np.ndarray, labels: list[str]) -> dict:
    """Subset accuracy, macro/micro P/R/F1 and a per-class report over 0/1 indicator matrices (rows, labels)."""
    from sklearn.metrics import accuracy_score, classification_report

    result: dict = {"accuracy": float(accuracy_score(gold, predicted)), "count": int(gold.shape[0])}
    result.update(_averages(gold, predicted, None))
    report = classification_report(gold, predicted, target_names=labels, output_dict=True, zero_division=0)
    result["per_class"] = {name: {k: float(v) for k, v in report[name].items()} for name in labels}
    result["labels"] = list(labels)
    return result


AVERAGES = ("macro", "micro", "weighted")


def _averages(gold, predicted, indices: list[int] | None) -> dict[str, float]:
    """Macro/micro/weighted F1 first (the numbers people compare), then precision and recall."""
    from sklearn.metrics import precision_recall_fscore_support

    prf = {avg: precision_recall_fscore_support(gold, predicted, labels=indices, average=avg, zero_division=0)
           for avg in AVERAGES}
    scores = {f"{avg}_f1": float(prf[avg][2]) for avg in AVERAGES}
    for avg in AVERAGES:
        scores[f"{avg}_precision"], scores[f"{avg}_recall"] = float(prf[avg][0]), float(prf[avg][1])
    return scores


def majority_label(train_labels: list[int]) -> int:
    """The most frequent training label (ties → the smallest index)."""
    counts = Counter(train_labels)
    return min(counts, key=lambda label: (-counts[label], label))
