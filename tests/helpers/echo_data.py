"""A small echo-data folder (the E5 mix's task files) for the echo-data tests."""

from __future__ import annotations

import json
from pathlib import Path

# Rows per task file: allnli and quora_duplicates hold two alternating splits, so 16 -> 8 + 8 and 8 -> 4 + 4.
TASK_ROWS = {"msmarco_passage": 8, "allnli": 16, "quora_duplicates": 8, "fever": 4}


def write_echo_data(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for task, count in TASK_ROWS.items():
        with (folder / f"{task}.jsonl").open("w") as handle:
            for index in range(count):
                handle.write(
                    json.dumps(
                        {
                            "query": f"{task} question {index}",
                            "positive": f"{task} answer {index}",
                            "negative": f"{task} other {index}",
                        }
                    )
                    + "\n"
                )
    return folder
