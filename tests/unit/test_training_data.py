"""One training-data type and one prompt resolver for the scan, training and distillation (issue 24 item 3).
No model is built here."""

from __future__ import annotations

from datasets import Dataset, DatasetDict

from st_prune.data import training_data
from st_prune.data.training_data import (
    TrainingData,
    prepare_training_data,
    to_training_data,
)
from st_prune.l3prune import scan as scan_module
from st_prune.l3prune.scan import L3Prune
from st_prune.training import trainer


def rows(count: int, instruction: str | None = None) -> list[dict]:
    made = [{"anchor": f"query {i}", "positive": f"answer {i}", "negative": f"other {i}"} for i in range(count)]
    return [{**row, "instruction": instruction} for row in made] if instruction else made


def test_one_type_and_one_prompts_definition():
    assert scan_module.TrainingData is trainer.TrainingData is training_data.TrainingData
    assert scan_module.Prompts is trainer.Prompts is training_data.Prompts
    assert not hasattr(scan_module, "_prepare_data") and not hasattr(scan_module, "_column_prompt")


def test_the_scan_sees_the_datasets_and_prompts_the_trainer_trains_on():
    # A DatasetDict whose datasets carry instructions: the trainer splits them by instruction; the scan used to refuse.
    data = DatasetDict(
        {"a": Dataset.from_list(rows(8, "Find the answer") + rows(8, "Match it")), "b": Dataset.from_list(rows(8))}
    )
    prepared = prepare_training_data(data, batch_size=4, prompts=None)
    assert sorted(prepared.datasets) == ["a-d0", "a-d1", "b"]
    assert prepared.prompt("a-d0", "anchor") == "Find the answer →" and prepared.prompt("b", "anchor") is None
    batches = L3Prune(batch_size=4, num_batches=6, show_progress_bar=False).sample(data)
    trained = {
        (dataset_prompts.get("anchor"), dataset_prompts.get("positive"))
        for dataset_prompts in (
            {"anchor": prepared.prompt(name, "anchor"), "positive": prepared.prompt(name, "positive")}
            for name in prepared.datasets
        )
    }
    assert {(batch.prompts["anchor"], batch.prompts["positive"]) for batch in batches} <= trained
    assert {batch.prompts["anchor"] for batch in batches} == {"Find the answer →", "Match it →", None}
    # A TrainingData goes to the scan as it is, prompts included.
    again = L3Prune(batch_size=4, num_batches=6, show_progress_bar=False).sample(prepared)
    assert [batch.texts for batch in again] == [batch.texts for batch in batches]


def test_trainer_style_prompts_resolve_alike_everywhere():
    single = Dataset.from_list(rows(8))
    data = to_training_data(single, {"anchor": "query: "})
    assert isinstance(data, TrainingData) and data.prompt("train", "anchor") == "query: "
    assert data.prompt("train", "positive") is None
    batches = L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).sample(single, {"anchor": "query: "})
    assert all(batch.prompts == {"anchor": "query: ", "positive": None, "negative": None} for batch in batches)
