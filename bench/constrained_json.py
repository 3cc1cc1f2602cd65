"""JSON-schema constrained output on SmolLM2: how many of 50 outputs parse and validate, with and
without the constraint (greedy, same prompts).

    python bench/constrained_json.py
"""

from __future__ import annotations

import argparse
import json
import time

import jsonschema

from lmforge.decode.params import DecodeParams
from lmforge.recipes.generate import open_generator

SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40},
                         "year": {"type": "integer"}, "famous_for": {"type": "string", "maxLength": 80}},
          "required": ["name", "country", "year", "famous_for"]}
SUBJECTS = ["Marie Curie", "Leonardo da Vinci", "Albert Einstein", "Ada Lovelace", "Isaac Newton", "Frida Kahlo",
            "Nelson Mandela", "Wolfgang Amadeus Mozart", "Charles Darwin", "Cleopatra", "William Shakespeare",
            "Galileo Galilei", "Jane Austen", "Mahatma Gandhi", "Pablo Picasso", "Nikola Tesla", "Florence Nightingale",
            "Ludwig van Beethoven", "Rosalind Franklin", "Alan Turing", "Confucius", "Joan of Arc", "Vincent van Gogh",
            "Amelia Earhart", "Martin Luther King Jr.", "Queen Victoria", "Napoleon Bonaparte", "Socrates",
            "Johann Sebastian Bach", "Louis Pasteur", "Michelangelo", "Charles Dickens", "Abraham Lincoln",
            "Thomas Edison", "Harriet Tubman", "Gregor Mendel", "Hypatia", "Rembrandt", "Dante Alighieri",
            "Simon Bolivar", "Catherine the Great", "Copernicus", "Sigmund Freud", "Leo Tolstoy", "Genghis Khan",
            "Julius Caesar", "Claude Monet", "Alexander Fleming", "Mary Shelley", "Ibn Battuta"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    generator = open_generator("smollm2-135m-instruct", max_new_tokens=args.new_tokens)
    texts = [f"Reply with JSON only, with the keys name, country, year (of birth) and famous_for, about {s}."
             for s in SUBJECTS]
    print(f"{len(texts)} prompts, greedy, at most {args.new_tokens} new tokens, SmolLM2-135M-Instruct fp32")
    print("| decoding | parses as JSON | validates against the schema | seconds |")
    print("|---|---|---|---|")
    for name, params in (("unconstrained", DecodeParams()), ("json_schema", DecodeParams(json_schema=json.dumps(SCHEMA)))):
        started = time.perf_counter()
        outputs = [generator.task.text(c[0].tokens) for c in generator.run(texts, params, args.batch_size)]
        seconds = time.perf_counter() - started
        parsed, valid = 0, 0
        for text in outputs:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            parsed += 1
            try:
                jsonschema.validate(value, SCHEMA)
                valid += 1
            except jsonschema.ValidationError:
                pass
        print(f"| {name} | {parsed}/{len(texts)} | {valid}/{len(texts)} | {seconds:.0f} |")
        print(f"<!-- e.g. {outputs[0][:120]!r} -->")


if __name__ == "__main__":
    main()
