"""Draw the CPU recipes' shipped evaluation files from the shared data folder (seeded, so re-running rewrites them
byte for byte).

    python bench/make_recipe_data.py --data ../shared/data

writes, into st_prune/recipes/data/ (the two older files, stsb-dev-300 and debian-dev-300, are left as they are):

- ``sick-dev-300.jsonl``: 300 SICK trial pairs, a local ``sts`` task;
- ``banking77-dev-classification.jsonl``: Banking77 intent classification, a local ``classification`` task: 8
  training queries per intent (mteb's ``samples_per_label``, so every experiment fits on the same 616 rows) drawn
  from the queries the triplets were made of, and 300 held-out dev queries to score;
- ``debian-clustering-300.jsonl``: 300 held-out Debian package summaries, 25 from each of the 12 most common
  sections, a local ``clustering`` task (none of them is a query of debian-dev-300).

Every file is dev data: nothing in it is a training triplet's anchor, positive or negative, except the
classification's ``train`` rows, which are the classifier's own training set as in MTEB's Banking77.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from common import add_data_argument, data_file, read_jsonl

OUT = Path(__file__).resolve().parent.parent / "st_prune" / "recipes" / "data"
SEED = 42


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {path.relative_to(OUT.parent.parent.parent)}")


def sick_pairs(data: Path, count: int) -> list[dict]:
    rows = read_jsonl(data_file(data, "dev", "sick-dev.jsonl"))
    picked = random.Random(SEED).sample(rows, count)
    return [{"sentence1": r["sentence1"], "sentence2": r["sentence2"], "score": r["score"]} for r in picked]


def banking_classification(data: Path, per_label: int, test: int) -> list[dict]:
    rng = random.Random(SEED)
    by_label: dict[str, list[str]] = {}
    for row in read_jsonl(data_file(data, "dev", "banking77-train.jsonl")):
        by_label.setdefault(row["label"], []).append(row["text"])
    train = [
        {"text": text, "label": label, "split": "train"}
        for label in sorted(by_label)
        for text in rng.sample(by_label[label], per_label)
    ]
    dev = rng.sample(read_jsonl(data_file(data, "dev", "banking77-dev.jsonl")), test)
    return train + [{"text": r["text"], "label": r["label"], "split": "test"} for r in dev]


def debian_clusters(data: Path, sections: int, per_section: int) -> list[dict]:
    taken = {row["query"] for row in read_jsonl(OUT / "debian-dev-300.jsonl")}
    by_section: dict[str, list[str]] = {}
    for row in read_jsonl(data_file(data, "dev", "debian-dev.jsonl")):
        if row["query"] not in taken:
            by_section.setdefault(row["section"], []).append(row["query"])
    common = sorted(s for s, _ in Counter({s: len(v) for s, v in by_section.items()}).most_common(sections))
    rng = random.Random(SEED)
    return [
        {"text": text, "label": section} for section in common for text in rng.sample(by_section[section], per_section)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    args = parser.parse_args()
    write_jsonl(OUT / "sick-dev-300.jsonl", sick_pairs(args.data, 300))
    write_jsonl(OUT / "banking77-dev-classification.jsonl", banking_classification(args.data, 8, 300))
    write_jsonl(OUT / "debian-clustering-300.jsonl", debian_clusters(args.data, 12, 25))


if __name__ == "__main__":
    main()
