"""Ranking metrics for relevance scores: ROC AUC over all pairs, NDCG@k per query, wrapping scikit-learn."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np


def ranking_metrics(queries: Sequence[Hashable], relevance: Sequence[float], scores: Sequence[float],
                    ks: Sequence[int] = (1, 5, 10)) -> dict:
    """AUC of `scores` against binary `relevance` (> 0 = relevant), and mean NDCG@k over the queries that
    have at least two candidates and one relevant one (others cannot be ranked well or badly).

    >>> ranking_metrics(["q", "q", "r", "r"], [1, 0, 0, 1], [0.9, 0.2, 0.3, 0.8], ks=[1])["ndcg@1"]
    1.0
    """
    from sklearn.metrics import ndcg_score, roc_auc_score  # (~100 MB: imported when scored)

    gold = np.asarray(relevance, dtype=float)
    predicted = np.asarray(scores, dtype=float)
    binary = (gold > 0).astype(int)
    result: dict = {"count": len(gold), "auc": float(roc_auc_score(binary, predicted)) if 0 < binary.sum() < len(binary)
                    else None}
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for row, query in enumerate(queries):
        groups[query].append(row)
    ranked = [rows for rows in groups.values() if len(rows) > 1 and gold[rows].max() > 0]
    result["queries"] = len(ranked)
    for k in ks:
        values = [ndcg_score([gold[rows]], [predicted[rows]], k=k) for rows in ranked]
        result[f"ndcg@{k}"] = float(np.mean(values)) if values else None
    return result
