"""The sentiment monitor on real text: VADER's human-rated sentences (tweets, movie reviews, Amazon reviews, NYT
editorials — one topic each) streamed through `lmforge monitor` with an SST-2 classifier run.

Reports, per topic: texts, the human negative rate (mean rating < 0), the classifier's, their agreement
(binary, texts with a non-zero rating), and the alerts raised; writes the trend plot.

    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d /tmp/vader
    lmforge train examples/sst2.yaml train.output_dir=runs/sst2
    python bench/monitor_vader.py runs/sst2 /tmp/vader/vaderSentiment-3.3.2.tar.gz --plot trend.png
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
from pathlib import Path

from lmforge.recipes.monitor import monitor

SOURCES = {"tweets": "tweets_GroundTruth.txt", "movies": "movieReviewSnippets_GroundTruth.txt",
           "amazon": "amazonReviewSnippets_GroundTruth.txt", "nyt": "nytEditorialSnippets_GroundTruth.txt"}


def read_ratings(archive: Path) -> dict[str, list[tuple[float, str]]]:
    """(mean human rating, text) per source, from the vaderSentiment sdist (or the inner hutto archive)."""
    with tarfile.open(archive) as outer:
        inner_name = next((n for n in outer.getnames() if n.endswith("hutto_ICWSM_2014.tar.gz")), None)
        inner = tarfile.open(fileobj=io.BytesIO(outer.extractfile(inner_name).read())) if inner_name else outer
        rows = {}
        for topic, suffix in SOURCES.items():
            name = next(n for n in inner.getnames() if n.endswith(suffix))
            lines = inner.extractfile(name).read().decode("utf-8", errors="replace").splitlines()
            rows[topic] = [(float(p[1]), " ".join(p[2].split())) for p in (line.split("\t") for line in lines)
                           if len(p) >= 3 and p[2].strip()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("archive", type=Path, help="vaderSentiment-3.3.2.tar.gz (or hutto_ICWSM_2014.tar.gz)")
    parser.add_argument("--per-topic", type=int, default=1000, help="texts per topic (default 1000)")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--threshold", type=float, default=0.6)
    parser.add_argument("--plot", type=Path, default=Path("monitor_trend.png"))
    args = parser.parse_args()
    # every k-th text of each file, in file order (the movie file holds its positive reviews first)
    ratings = {topic: rows[:: max(len(rows) // args.per_topic, 1)][: args.per_topic]
               for topic, rows in read_ratings(args.archive).items()}
    feed, truth = [], []
    for i in range(max(len(rows) for rows in ratings.values())):  # topics interleaved, each in file order
        for topic, rows in ratings.items():
            if i < len(rows):
                feed.append(f"{topic}\t{rows[i][1]}")
                truth.append((topic, rows[i][0]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "feed.txt")
        path.write_text("\n".join(feed) + "\n", encoding="utf-8")
        labels_path = Path(folder, "labels.jsonl")
        watcher = monitor(args.run_dir, str(path), args.window, args.threshold, min_count=args.window // 2,
                          recover_below=args.threshold - 0.1, plot_path=args.plot, predictions_path=labels_path, batch_size=64)
        labels = [json.loads(line)["label"] for line in labels_path.read_text().splitlines()]
    negative = "0"
    print("| topic | texts | human negative rate | classifier negative rate | agreement (rated ≠ 0) | alerts |")
    print("|---|---|---|---|---|---|")
    for topic in ratings:
        rows = [(score, label) for (t, score), label in zip(truth, labels, strict=True) if t == topic]
        human = sum(score < 0 for score, _ in rows) / len(rows)
        predicted = sum(label == negative for _, label in rows) / len(rows)
        rated = [(score, label) for score, label in rows if score != 0]
        agree = sum((score < 0) == (label == negative) for score, label in rated) / len(rated)
        alerts = sum(a["topic"] == topic and a["event"] == "alert" for a in watcher.alerts)
        print(f"| {topic} | {len(rows)} | {human:.3f} | {predicted:.3f} | {agree:.3f} | {alerts} |")
    print(f"trend plot: {args.plot}")


if __name__ == "__main__":
    main()
