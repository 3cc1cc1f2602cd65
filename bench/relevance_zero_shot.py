"""Zero-shot baseline for relevance scoring: MiniLM sentence embeddings (the all-MiniLM bi-encoder recipe),
relevance = cosine(query, candidate), on the packaged chatterbot reply-ranking test split — the figure a
tuned `relevance-scoring` cross-encoder (examples/relevance_chatterbot.yaml) should beat.

    python bench/relevance_zero_shot.py
"""

from __future__ import annotations

import argparse

from lmforge.data.packaged import chatterbot_reply_relevance
from lmforge.metrics.ranking import ranking_metrics
from lmforge.models.sentence import SentenceEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--split", default="test", choices=["validation", "test"])
    args = parser.parse_args()
    rows = chatterbot_reply_relevance(args.split)
    encoder = SentenceEncoder(args.encoder)
    queries = encoder.encode([r["text"] for r in rows])
    candidates = encoder.encode([r["text_pair"] for r in rows])
    scores = (queries * candidates).sum(-1).tolist()
    result = ranking_metrics([r["text"] for r in rows], [float(r["label"] == "relevant") for r in rows], scores, [1, 5])
    print(f"{args.encoder} cosine on chatterbot-replies-{args.split}: {result['count']} pairs, {result['queries']} queries; "
          f"AUC {result['auc']:.4f}  NDCG@1 {result['ndcg@1']:.4f}  NDCG@5 {result['ndcg@5']:.4f}")


if __name__ == "__main__":
    main()
