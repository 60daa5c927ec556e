"""A recipe run interrupted in-process resumes from the newest intact checkpoint of its own settings."""

from __future__ import annotations

import json
import logging

import pytest
from paths import TESTS
from runner_resume import record, write_recipe
from stop_at import StopAt

from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner
from st_prune.training import trainer as training


# --- a checkpoint damaged by the kill, and checkpoints of other settings ------------------------------------
def interrupt_training_at(monkeypatch, step: int) -> None:
    real = training.build_trainer
    monkeypatch.setattr(
        training,
        "build_trainer",
        lambda *a, callbacks=None, **k: real(*a, callbacks=[*(callbacks or []), StopAt(step)], **k),
    )


def test_a_checkpoint_damaged_by_the_kill_is_skipped_for_the_one_before(tiny_llm, tmp_path, monkeypatch, caplog):
    recipe = load_recipe(write_recipe(tmp_path, tiny_llm("llama", layers=4), steps=6, save_steps=2))
    output, lines = tmp_path / "run", []
    interrupt_training_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        RecipeRunner(recipe, output, log=lambda _: None).run()
    monkeypatch.undo()
    checkpoints = output / "work" / "solo" / "checkpoints"
    assert sorted(path.name for path in checkpoints.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    weights = checkpoints / "checkpoint-4" / training.ADAPTER_WEIGHTS_NAME  # a kill in the middle of its save
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    with caplog.at_level(logging.WARNING, logger="st_prune"):
        RecipeRunner(recipe, output, only="train", log=lines.append).run()
    skipped = [record.getMessage() for record in caplog.records if "Skipping damaged" in record.getMessage()]
    assert len(skipped) == 1, skipped
    assert skipped[0].startswith("Skipping damaged checkpoint(s) checkpoint-4: adapter_model.safetensors is truncated")
    assert skipped[0].endswith("resuming from checkpoint-2")
    assert "       resuming from checkpoint-2 (step 2 of 6)" in lines
    trained = record(output)
    assert trained["resumed_from"] == "checkpoint-2" and trained["steps"] == 6
    assert [row["step"] for row in trained["loss_history"]] == [1, 2, 3, 4, 5, 6]


def test_checkpoints_of_other_settings_are_discarded_not_resumed(tiny_llm, tmp_path, monkeypatch):
    path = write_recipe(tmp_path, tiny_llm("llama", layers=4), steps=6, save_steps=2)
    output, lines = tmp_path / "run", []
    interrupt_training_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        RecipeRunner(load_recipe(path), output, log=lambda _: None).run()
    monkeypatch.undo()
    assert (output / "work" / "solo" / "checkpoints" / "checkpoint-2").is_dir()

    # A new learning rate is another training: its step 2 is not the old run's step 2.
    RecipeRunner(load_recipe(path, ["training.learning_rate=5e-4"]), output, only="train", log=lines.append).run()
    assert any(line.strip().startswith("discarding ") and "other settings" in line for line in lines), lines
    assert not any("resuming from" in line for line in lines), lines
    trained = record(output)
    assert trained["resumed_from"] is None and trained["settings"]["learning_rate"] == 5e-4


RUN_MADE_BY_4BEF010 = TESTS / "data" / "run-made-by-4bef010"


def test_a_run_folder_written_by_the_flat_layout_code_resumes_with_every_stage_skipped(tmp_path):
    """Issue 24: the package layout and the stage contract keep every stage key, so a run folder written by the code
    before them (tests/data/run-made-by-4bef010, made by commit 4bef010) resumes with no stage re-run."""
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(RUN_MADE_BY_4BEF010, folder)
    lines: list[str] = []
    runner = RecipeRunner(load_recipe(folder / "recipe.yaml"), folder / "run", log=lines.append)
    summary = runner.run()
    assert runner.calls == {}, lines
    skipped = [line for line in lines if line.startswith("[skip]")]
    assert len(skipped) == 1 + 5 * 2, lines  # the scan, then prune, train, export, evaluate, card of both variants
    assert not any(line.startswith("[run ]") for line in lines), lines
    assert summary["small"]["score"] == json.loads((folder / "run/work/small/eval.json").read_text())["average"]
