"""The customer-service assistant, measured: each held-out customer question (a paraphrase of an FAQ entry)
is asked through `lmforge serve`'s chat endpoint with and without FAQ retrieval; an answer counts as right
when it holds the entry's key fact, as passed on when it says it will pass the question on, and as wrong
otherwise. Also reports how often MiniLM retrieves the right entry.

    python examples/customer_service/evaluate.py --model smollm2-135m-instruct
    python examples/customer_service/evaluate.py --model runs/dialogue-smollm2      # a fine-tuned run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastapi.testclient import TestClient

from lmforge.data.grounding import NOT_COVERED
from lmforge.recipes.served_model import served_model
from lmforge.serve.app import create_app
from lmforge.serve.retrieval import FaqRetriever

HERE = Path(__file__).parent


def holds_fact(answer: str, expected: list[str]) -> bool:
    return any(fact.lower() in answer.lower() for fact in expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="packaged alias, folder or generation run")
    parser.add_argument("--faq", type=Path, default=HERE / "faq.jsonl")
    parser.add_argument("--questions", type=Path, default=HERE / "questions.jsonl")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--show", action="store_true", help="print every question and answer")
    args = parser.parse_args()
    questions = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    retriever = FaqRetriever.from_file(args.faq, top_k=2)
    top1 = sum(retriever.search(q["question"], 1)[:1] and retriever.search(q["question"], 1)[0][1].question
               == q["faq_question"] for q in questions)
    top2 = sum(any(e.question == q["faq_question"] for _, e in retriever.search(q["question"], 2)) for q in questions)
    print(f"retrieval: right entry first {top1}/{len(questions)}, in the top 2 {top2}/{len(questions)}")
    served = served_model(args.model)
    results = {}
    for label, grounded in (("without FAQ", None), ("with FAQ retrieval", retriever)):
        served.retriever = grounded
        right = passed = 0
        with TestClient(create_app(served)) as client:
            for q in questions:
                body = {"model": served.name, "messages": [{"role": "user", "content": q["question"]}],
                        "max_tokens": args.max_tokens, "temperature": 0}
                reply = client.post("/v1/chat/completions", json=body).json()
                if "choices" not in reply:
                    raise SystemExit(f"error: the server refused {q['question']!r}: {reply.get('error', reply)}")
                answer = reply["choices"][0]["message"]["content"]
                right += holds_fact(answer, q["expect"])
                passed += not holds_fact(answer, q["expect"]) and NOT_COVERED.split(".")[0] in answer
                if args.show:
                    print(f"[{label}] {q['question']}\n    → {answer!r}")
        results[label] = (right, passed, len(questions) - right - passed)
    print("| model | FAQ | right (key fact) | passed on | wrong |\n|---|---|---|---|---|")
    for label, (right, passed, wrong) in results.items():
        print(f"| {args.model} | {label} | {right}/{len(questions)} | {passed} | {wrong} |")


if __name__ == "__main__":
    main()
