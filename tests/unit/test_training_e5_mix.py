"""The E5 mix folder reads as one dataset per task with its instruction."""

from __future__ import annotations

import pytest
from training_rows import write_jsonl

from st_prune.data.echo import E5_INSTRUCTIONS, load_e5_mix
from st_prune.errors import StPruneError
from st_prune.training.trainer import prepare_training_data


def test_e5_mix_folder_gives_one_dataset_per_task_with_its_instruction(tmp_path):
    folder = tmp_path / "echo-data"
    folder.mkdir()
    for name, count in (("msmarco_passage", 6), ("allnli", 8), ("quora_duplicates_split1", 4)):
        rows = [{"query": f"{name} q{i}", "positive": f"{name} p{i}", "negative": f"{name} n{i}"} for i in range(count)]
        write_jsonl(folder / f"{name}.jsonl", rows)
    datasets, prompts = load_e5_mix(folder)
    assert sorted(datasets) == ["allnli_split1", "allnli_split2", "msmarco_passage", "quora_duplicates_split1"]
    assert datasets["allnli_split1"]["anchor"] == [f"allnli q{i}" for i in (0, 2, 4, 6)]  # rows alternate
    assert datasets["msmarco_passage"].column_names == ["anchor", "positive", "negative"]
    assert prompts["msmarco_passage"] == {"anchor": E5_INSTRUCTIONS["msmarco_passage"] + " →"}
    assert prompts["allnli_split2"] == dict.fromkeys(
        ["anchor", "positive", "negative"], "Retrieve semantically similar text →"
    )

    prepared = prepare_training_data(folder, batch_size=4)  # a folder of E5 task files is recognised
    train_dataset, trainer_prompts = prepared.for_trainer()
    assert sorted(train_dataset) == sorted(datasets) and trainer_prompts == prompts

    write_jsonl(folder / "my_task.jsonl", [{"query": "q", "positive": "p", "negative": "n"}])
    with pytest.raises(StPruneError, match="no instruction for my_task .*pass instructions="):
        load_e5_mix(folder)
