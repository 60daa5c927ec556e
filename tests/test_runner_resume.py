"""`st-prune run` resumes inside the train stage (issue 14, item 1): the stage trains through
``st_prune.training.trainer.train_encoder`` (what `st-prune train` runs) with a checkpoint every ``training.save_steps``.

The proof: a run SIGKILLed mid-training and started again with the same command continues from its last checkpoint
(the log names the step) and ends with the adapter an uninterrupted run trains (max difference <= 1e-5), with a
record (train.json) that covers the whole training.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from st_prune.training import trainer as training
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner
from st_prune.util.run_lock import LOCK_NAME

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import StopAt  # noqa: E402  (the Ctrl-C-at-step callback of the st-prune train resume tests)

WORDS = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field", "sun", "road", "debian", "package"]


def write_recipe(folder: Path, model: Path, steps: int, save_steps: int, **training_changes) -> Path:
    """One 2-layer variant of the tiny model, trained ``steps`` steps on 24 triplets in two instruction groups
    (several epochs, so the resumed data order matters), no evaluation."""
    with (folder / "triplets.jsonl").open("w") as handle:
        for index in range(24):
            a, b, c = WORDS[index % 12], WORDS[(index + 1) % 12], WORDS[(index + 5) % 12]
            handle.write(json.dumps({"task": "pairs" if index % 2 else "other", "anchor": f"the {a} and {b}",
                                     "positive": f"a {a} with a {b}", "negative": f"the {c} on the road"}) + "\n")
    recipe = {
        "name": "tiny-resume",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
        "variants": [{"name": "solo", "layers": 2}],
        "scan": {"batch_size": 4, "num_batches": 2},
        "training": {"steps": steps, "batch_size": 4, "warmup_steps": 2, "learning_rate": 1e-3, "logging_steps": 1,
                     "save_steps": save_steps, **training_changes},
        "data": {"path": "triplets.jsonl", "instructions": {"pairs": "Retrieve matching pairs"}},
        "card": {"license": "apache-2.0", "language": ["en"]},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def adapter(output: Path) -> dict:
    return load_file(str(output / "work" / "solo" / "adapter" / "adapter_model.safetensors"))


def record(output: Path) -> dict:
    return json.loads((output / "work" / "solo" / "train.json").read_text())


# --- the proof: SIGKILL, then the same command --------------------------------------------------------------
def test_a_run_killed_mid_training_resumes_in_the_stage_and_ends_like_an_uninterrupted_one(tiny_llm, tmp_path):
    steps, save_steps = 40, 4
    recipe = write_recipe(tmp_path, tiny_llm("llama", layers=4), steps, save_steps)
    # One thread each: the two runs share the machine's cores, and tiny models train fastest on one.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(output: Path) -> list[str]:
        return [sys.executable, "-m", "st_prune.cli", "run", str(recipe), "--output", str(output)]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    with (tmp_path / "straight.log").open("w") as log:  # a file, not a pipe: a full pipe would stall it
        reference = subprocess.Popen(command(straight), stdout=log, stderr=subprocess.STDOUT, env=env)
    victim = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoints = killed / "work" / "solo" / "checkpoints"
    deadline = time.monotonic() + 240
    # trainer_state.json is the last file of a checkpoint: checkpoint-8 is whole once it exists.
    while not (checkpoints / "checkpoint-8" / "trainer_state.json").is_file():
        assert victim.poll() is None, "the run ended before its step-8 checkpoint"
        assert time.monotonic() < deadline, "no step-8 checkpoint within 4 minutes"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert not (killed / "stages" / "train.solo.json").exists()  # killed mid-training, not after
    assert json.loads((killed / LOCK_NAME).read_text())["pid"] == victim.pid  # the kill left its lock behind
    saved = sorted(int(path.name.split("-")[1]) for path in checkpoints.glob("checkpoint-*")
                   if (path / "trainer_state.json").is_file())
    earlier_seconds = json.loads(
        (checkpoints / f"checkpoint-{saved[-1]}" / training.CHECKPOINT_PROGRESS_NAME).read_text())["train_seconds"]

    started = time.perf_counter()
    resumed = subprocess.run(command(killed), capture_output=True, text=True, env=env, timeout=600)
    resumed_seconds = time.perf_counter() - started
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"took over the lock left by process {victim.pid}, which is no longer running" in resumed.stderr
    assert not (killed / LOCK_NAME).exists()
    match = re.search(r"resuming from checkpoint-(\d+) \(step (\d+) of 40\)", resumed.stdout)
    assert match and match.group(1) == match.group(2), resumed.stdout
    step = int(match.group(1))
    assert step == saved[-1] and 8 <= step < steps and step % save_steps == 0
    assert "[skip] scan: done earlier" in resumed.stdout and "[run ] train[solo]" in resumed.stdout

    assert reference.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    ours, theirs = adapter(killed), adapter(straight)
    assert ours.keys() == theirs.keys()
    difference = max(float((ours[name] - theirs[name]).abs().max()) for name in ours)
    moved = max(float(theirs[name].abs().max()) for name in theirs if "lora_B" in name)  # B starts at zero
    print(f"\nkilled at checkpoint-{step}, resumed run {resumed_seconds:.1f}s, max |adapter difference| "
          f"{difference:.2e} (largest lora_B weight {moved:.2e})")
    assert moved > 1e-4 and difference <= 1e-5

    # The record covers the whole training: every logged step, the same losses, the earlier time included.
    ours, theirs = record(killed), record(straight)
    assert [row["step"] for row in ours["loss_history"]] == list(range(1, steps + 1))
    assert [row["step"] for row in theirs["loss_history"]] == list(range(1, steps + 1))
    assert [row["loss"] for row in ours["loss_history"]] == pytest.approx(
        [row["loss"] for row in theirs["loss_history"]], abs=2e-4)  # rounded to 4 decimals in the record
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4) and ours["steps"] == steps
    assert ours["resumed_from"] == f"checkpoint-{step}" and theirs["resumed_from"] is None
    assert ours["seconds"] >= earlier_seconds > 0
    assert not checkpoints.exists()  # spent once the stage's marker is written


# --- a checkpoint damaged by the kill, and checkpoints of other settings ------------------------------------
def interrupt_training_at(monkeypatch, step: int) -> None:
    real = training.build_trainer
    monkeypatch.setattr(training, "build_trainer", lambda *a, callbacks=None, **k: real(
        *a, callbacks=[*(callbacks or []), StopAt(step)], **k))


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


RUN_MADE_BY_4BEF010 = Path(__file__).parent / "data" / "run-made-by-4bef010"


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
