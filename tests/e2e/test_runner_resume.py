"""`st-prune run` resumes inside the train stage (issue 14, item 1): the stage trains through
``st_prune.training.trainer.train_encoder`` (what `st-prune train` runs) with a checkpoint every ``training.save_steps``.

The proof: a run SIGKILLed mid-training and started again with the same command continues from its last checkpoint
(the log names the step) and ends with the adapter an uninterrupted run trains (max difference <= 1e-5), with a
record (train.json) that covers the whole training.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_resume import record, write_recipe
from safetensors.torch import load_file

from st_prune.training import trainer as training
from st_prune.util.run_lock import LOCK_NAME


def adapter(output: Path) -> dict:
    return load_file(str(output / "work" / "solo" / "adapter" / "adapter_model.safetensors"))


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
    saved = sorted(
        int(path.name.split("-")[1])
        for path in checkpoints.glob("checkpoint-*")
        if (path / "trainer_state.json").is_file()
    )
    earlier_seconds = json.loads(
        (checkpoints / f"checkpoint-{saved[-1]}" / training.CHECKPOINT_PROGRESS_NAME).read_text()
    )["train_seconds"]

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
    print(
        f"\nkilled at checkpoint-{step}, resumed run {resumed_seconds:.1f}s, max |adapter difference| "
        f"{difference:.2e} (largest lora_B weight {moved:.2e})"
    )
    assert moved > 1e-4 and difference <= 1e-5

    # The record covers the whole training: every logged step, the same losses, the earlier time included.
    ours, theirs = record(killed), record(straight)
    assert [row["step"] for row in ours["loss_history"]] == list(range(1, steps + 1))
    assert [row["step"] for row in theirs["loss_history"]] == list(range(1, steps + 1))
    assert [row["loss"] for row in ours["loss_history"]] == pytest.approx(
        [row["loss"] for row in theirs["loss_history"]], abs=2e-4
    )  # rounded to 4 decimals in the record
    assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-4) and ours["steps"] == steps
    assert ours["resumed_from"] == f"checkpoint-{step}" and theirs["resumed_from"] is None
    assert ours["seconds"] >= earlier_seconds > 0
    assert not checkpoints.exists()  # spent once the stage's marker is written
