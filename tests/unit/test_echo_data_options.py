"""echo-data folders and plain triplet files read as one training source, without a model."""

from __future__ import annotations

import json

from echo_data import write_echo_data

from st_prune.data.echo import is_echo_data_folder, load_training_source
from st_prune.data.triplets import load_triplets


def test_echo_data_options_and_plain_files(tmp_path):
    echo = write_echo_data(tmp_path / "echo-data")
    (echo / "my_task.jsonl").write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
    assert is_echo_data_folder(echo)
    # A file the paper's table does not name takes the default instruction; a recipe's table entry replaces one.
    source = load_training_source(
        echo, instructions={"fever": "Check the claim"}, default_instruction="Find it", max_rows=2
    )
    assert source.prompts["my_task"] == {"anchor": "Find it →"} and source.prompts["fever"] == {
        "anchor": "Check the claim →"
    }
    assert {name: len(part) for name, part in source.data.items()} == {
        "allnli_split1": 1,
        "allnli_split2": 1,
        "fever": 2,
        "msmarco_passage": 2,
        "my_task": 1,
        "quora_duplicates_split1": 1,
        "quora_duplicates_split2": 1,
    }  # max_rows is per task file
    assert len(source.rows) == 9 and set(source.rows.column_names) == {"anchor", "positive", "negative", "instruction"}
    # A triplet file (and a folder of other files) reads exactly as load_triplets reads it.
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text(
        "".join(json.dumps({"anchor": f"a{i}", "positive": f"p{i}", "task": "t"}) + "\n" for i in range(3))
    )
    plain = load_training_source(triplets, instructions={"t": "Do t"}, max_rows=2)
    assert plain.prompts is None and plain.data is plain.rows
    assert plain.data.to_dict() == load_triplets(triplets, instructions={"t": "Do t"}).select(range(2)).to_dict()
    assert not is_echo_data_folder(tmp_path)  # no E5 task file in it
