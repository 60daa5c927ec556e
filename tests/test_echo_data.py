"""The paper's data, one loader: an echo-data (E5 mix) folder is read the same way by `st-prune train` and
`st-prune run` (per-task instructions, instructions on the documents of symmetric tasks, allnli/quora split in two
halves); a triplet file reads as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from st_prune import cli
from st_prune.data.triplets import load_triplets
from st_prune.data.echo import E5_INSTRUCTIONS, is_echo_data_folder, load_training_source

# Rows per task file: allnli and quora_duplicates hold two alternating splits, so 16 -> 8 + 8 and 8 -> 4 + 4.
TASK_ROWS = {"msmarco_passage": 8, "allnli": 16, "quora_duplicates": 8, "fever": 4}


def write_echo_data(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for task, count in TASK_ROWS.items():
        with (folder / f"{task}.jsonl").open("w") as handle:
            for index in range(count):
                handle.write(json.dumps({"query": f"{task} question {index}", "positive": f"{task} answer {index}",
                                         "negative": f"{task} other {index}"}) + "\n")
    return folder


class Captured(Exception):
    """Raised in place of building the trainer: the test only needs what it would have been given."""


@pytest.fixture()
def capture_trainer(monkeypatch):
    """Every PrunedLLMTrainer construction records its datasets and prompts, then stops the command."""
    from st_prune.training import trainer as training
    seen: list[dict] = []

    def record(self, *args, **kwargs):
        dataset = kwargs["train_dataset"]
        named = dict(dataset) if hasattr(dataset, "keys") else {"": dataset}
        seen.append({"datasets": {name: part.to_dict() for name, part in named.items()},
                     "prompts": kwargs["args"].prompts})
        raise Captured

    monkeypatch.setattr(training.PrunedLLMTrainer, "__init__", record)
    return seen


def test_run_and_train_build_identical_training_data_from_one_echo_data_folder(tmp_path, tiny_llm, capture_trainer):
    model = tiny_llm("llama", layers=4)
    echo = write_echo_data(tmp_path / "echo-data")
    with pytest.raises(Captured):
        cli.main(["train", str(model), "--data", str(echo), "--layers", "2", "--max-steps", "1", "--batch-size", "4",
                  "--max-seq-length", "128", "--output", str(tmp_path / "trained")])
    recipe = {
        "name": "echo-test",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 128},  # room for E5 prompts
        "variants": [{"name": "two", "layers": 2}],
        "scan": {"batch_size": 4, "num_batches": 1},
        "training": {"steps": 1, "batch_size": 4, "warmup_steps": 0},
        "data": {"path": str(echo)},
        "card": {"license": "apache-2.0"},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(Captured):
        cli.main(["run", str(tmp_path / "recipe.yaml"), "--output", str(tmp_path / "run")])

    from_train, from_run = capture_trainer
    assert from_run == from_train
    # ... and both are the paper's mix, which the runner's old load_triplets path (one default-instruction group) was not.
    assert sorted(from_run["datasets"]) == ["allnli_split1", "allnli_split2", "fever", "msmarco_passage",
                                            "quora_duplicates_split1", "quora_duplicates_split2"]
    assert from_run["datasets"]["allnli_split2"]["anchor"] == [f"allnli question {i}" for i in range(1, 16, 2)]
    prompts = from_run["prompts"]
    assert prompts["msmarco_passage"] == {"anchor": E5_INSTRUCTIONS["msmarco_passage"] + " →"}
    symmetric = E5_INSTRUCTIONS["quora_duplicates_split2"] + " →"
    assert prompts["quora_duplicates_split2"] == {"anchor": symmetric, "positive": symmetric, "negative": symmetric}


def test_the_runner_scans_the_same_echo_data_it_trains_on(tmp_path):
    from st_prune.l3prune.scan import L3Prune

    echo = write_echo_data(tmp_path / "echo-data")
    source = load_training_source(echo)
    batches = L3Prune(batch_size=4, num_batches=20).sample(source.data, source.prompts)
    nli = E5_INSTRUCTIONS["allnli_split2"] + " →"
    assert any(batch.prompts == {"anchor": nli, "positive": nli, "negative": nli} for batch in batches)
    assert {batch.prompts["anchor"] for batch in batches} >= {E5_INSTRUCTIONS["fever"] + " →"}


def test_echo_data_options_and_plain_files(tmp_path):
    echo = write_echo_data(tmp_path / "echo-data")
    (echo / "my_task.jsonl").write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
    assert is_echo_data_folder(echo)
    # A file the paper's table does not name takes the default instruction; a recipe's table entry replaces one.
    source = load_training_source(echo, instructions={"fever": "Check the claim"}, default_instruction="Find it",
                                  max_rows=2)
    assert source.prompts["my_task"] == {"anchor": "Find it →"} and source.prompts["fever"] == {"anchor": "Check the claim →"}
    assert {name: len(part) for name, part in source.data.items()} == {
        "allnli_split1": 1, "allnli_split2": 1, "fever": 2, "msmarco_passage": 2, "my_task": 1,
        "quora_duplicates_split1": 1, "quora_duplicates_split2": 1}  # max_rows is per task file
    assert len(source.rows) == 9 and set(source.rows.column_names) == {"anchor", "positive", "negative", "instruction"}
    # A triplet file (and a folder of other files) reads exactly as load_triplets reads it.
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({"anchor": f"a{i}", "positive": f"p{i}", "task": "t"}) + "\n" for i in range(3)))
    plain = load_training_source(triplets, instructions={"t": "Do t"}, max_rows=2)
    assert plain.prompts is None and plain.data is plain.rows
    assert plain.data.to_dict() == load_triplets(triplets, instructions={"t": "Do t"}).select(range(2)).to_dict()
    assert not is_echo_data_folder(tmp_path)  # no E5 task file in it
