"""The paper's data, one loader: an echo-data (E5 mix) folder is read the same way by `st-prune train` and
`st-prune run` (per-task instructions, instructions on the documents of symmetric tasks, allnli/quora split in two
halves); a triplet file reads as before."""

from __future__ import annotations

import pytest
import yaml
from echo_data import write_echo_data

from st_prune import cli
from st_prune.data.echo import E5_INSTRUCTIONS, load_training_source


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
        seen.append(
            {"datasets": {name: part.to_dict() for name, part in named.items()}, "prompts": kwargs["args"].prompts}
        )
        raise Captured

    monkeypatch.setattr(training.PrunedLLMTrainer, "__init__", record)
    return seen


def test_run_and_train_build_identical_training_data_from_one_echo_data_folder(tmp_path, tiny_llm, capture_trainer):
    model = tiny_llm("llama", layers=4)
    echo = write_echo_data(tmp_path / "echo-data")
    with pytest.raises(Captured):
        cli.main(
            [
                "train",
                str(model),
                "--data",
                str(echo),
                "--layers",
                "2",
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--max-seq-length",
                "128",
                "--output",
                str(tmp_path / "trained"),
            ]
        )
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
    assert sorted(from_run["datasets"]) == [
        "allnli_split1",
        "allnli_split2",
        "fever",
        "msmarco_passage",
        "quora_duplicates_split1",
        "quora_duplicates_split2",
    ]
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
