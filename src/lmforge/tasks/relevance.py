"""Relevance scoring: a (query, candidate) text pair → the probability that the candidate is relevant.

A pointwise cross-encoder (a two-label classification head over the pair) for ranking candidates in a
recommender or a search engine: evaluated with ROC AUC over all pairs and NDCG@k per query, where the
query is the first text and its candidates are every row with the same query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from lmforge.config.strict import STRICT
from lmforge.data.errors_policy import RowErrors
from lmforge.data.labelled import TextExample
from lmforge.data.params import DataParams
from lmforge.data.splits import Splits
from lmforge.errors import ConfigError
from lmforge.metrics.ranking import ranking_metrics
from lmforge.models.labels import label_meaning, saved_labels
from lmforge.tasks.classification import TextClassification, TextClassificationParams

RELEVANT_NAMES = ("relevant", "1", "yes", "true", "positive")


class RelevanceScoringParams(BaseModel):
    model_config = STRICT

    name: Literal["relevance-scoring"] = "relevance-scoring"
    relevant_label: str | None = Field(None, description="The label that marks a relevant pair (default: the one "
                                                         "named relevant, 1, yes, true or positive).")
    ndcg_at: list[int] = Field([1, 5, 10], min_length=1, description="The k of each NDCG@k reported.")


class RelevanceScoring(TextClassification):
    """Two-label classification of (query, candidate) pairs, scored as a ranking."""

    default_metric = "auc"

    def __init__(self, params: RelevanceScoringParams, labels: list[str] | None = None):
        super().__init__(TextClassificationParams(), labels)
        self.relevance_params = params
        self.metric_names = ("auc", *(f"ndcg@{k}" for k in params.ndcg_at), "accuracy", "macro_f1")

    def read_splits(self, data: DataParams, seed: int) -> Splits:
        if data.text_pair_column is None:
            raise ConfigError("data.text_pair_column: relevance-scoring reads (query, candidate) pairs; name the "
                              "candidate's column (the query is data.text_column)")
        splits = super().read_splits(data, seed)
        self.relevant_label()  # two labels, one of them relevant: checked before training starts
        return splits

    def read_file(self, path: str, data: DataParams, errors: RowErrors, labelled: bool) -> list[TextExample]:
        examples = super().read_file(path, data, errors, labelled)
        if examples and examples[0].text_pair is None:
            raise ConfigError(f"{path}: relevance-scoring needs a candidate column (data.text_pair_column)")
        return examples

    def relevant_label(self) -> str:
        """The label of relevant pairs."""
        if len(self.labels) != 2:
            raise ConfigError(f"relevance-scoring needs two labels (relevant or not), found {self.labels}")
        return label_meaning(self.labels, self.relevance_params.relevant_label, RELEVANT_NAMES, "task.relevant_label",
                             "marks a relevant pair")

    def decode(self, outputs, features, examples) -> list[dict]:
        relevant = self.relevant_label()
        return [row | {"relevance": row["probabilities"][relevant]} for row in super().decode(outputs, features, examples)]

    def score(self, predictions: list[dict], examples: list[TextExample], train_examples: list[TextExample]) -> dict:
        metrics = super().score(predictions, examples, train_examples)
        relevant = self.relevant_label()
        ranking = ranking_metrics([ex.text for ex in examples], [float(ex.labels[0] == relevant) for ex in examples],
                                  [p["relevance"] for p in predictions], self.relevance_params.ndcg_at)
        return ranking | {k: v for k, v in metrics.items() if k != "count"}

    def from_saved(self, model_dir: Path) -> RelevanceScoring:
        return RelevanceScoring(self.relevance_params, saved_labels(model_dir))
