"""One writer per run folder (issue 23, case 8): two `st-prune run` processes on the same --output interleaved
their stages and reported each other's scores. The second one is refused in one line naming the first one's process
and machine; a lock left by a killed run is taken over; the lock goes away however the run ends."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import st_prune
from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner
from st_prune.util import run_lock
from st_prune.util.run_lock import LOCK_NAME, hold_run_lock

SOURCE = Path(st_prune.__file__).resolve().parent.parent


@pytest.fixture()
def recipe(tiny_llm, tmp_path) -> Path:
    (tmp_path / "triplets.jsonl").write_text(
        "".join(
            json.dumps({"anchor": f"the cat {i}", "positive": f"a cat {i}", "negative": f"no dog {i}"}) + "\n"
            for i in range(8)
        )
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-lock",
                "base": {"model": str(tiny_llm()), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
                "variants": [{"name": "solo", "layers": 2}],
                "data": {"path": "triplets.jsonl"},
                "card": {"license": "apache-2.0"},
            }
        )
    )
    return path


@pytest.fixture()
def stages_see(monkeypatch) -> list:
    """What the lock file held while the runner's stages ran (they run nothing here: the lock is what is tested)."""
    seen: list = []

    def record(self, stages):
        lock = self.output / LOCK_NAME
        seen.append(json.loads(lock.read_text()) if lock.is_file() else None)

    monkeypatch.setattr(RecipeRunner, "_run_stages", record)
    return seen


@pytest.fixture()
def other_run(tmp_path):
    """``other_run(folder)``: another live process holding ``folder``'s lock, as a running `st-prune run` does."""
    processes = []

    def start(folder: Path) -> subprocess.Popen:
        code = (
            "import sys, time\nfrom st_prune.util.run_lock import hold_run_lock\n"
            "with hold_run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SOURCE)},
        )
        processes.append(process)
        assert process.stdout.readline() == "held\n"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def lock_of(pid: int, **changes) -> str:
    holder = {
        "host": socket.gethostname(),
        "pid": pid,
        "boot_id": run_lock._boot_id(),
        "start_ticks": run_lock._start_ticks(pid),
        "started": "2025-01-01T00:00:00+00:00",
        **changes,
    }
    return json.dumps(holder)


def ended_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    return int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
        ).stdout
    )


# --- a second run -----------------------------------------------------------------------------------------
def test_a_second_run_on_the_folder_is_refused_naming_the_first(recipe, tmp_path, other_run, stages_see, capsys):
    output = tmp_path / "run"
    first = other_run(output)
    assert cli.main(["run", str(recipe), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"st-prune run: error: {output} is in use by another st-prune run (process {first.pid} on "
        f"{socket.gethostname()}, started "
    ), err
    assert err.endswith("): wait for it to end, or stop it, and run again\n") and err.count("\n") == 1, err
    assert stages_see == [] and sorted(os.listdir(output)) == [LOCK_NAME]  # nothing of the second run was written
    assert json.loads((output / LOCK_NAME).read_text())["pid"] == first.pid


def test_a_second_run_in_the_same_process_is_refused(tmp_path):
    """The lock names this very process (same pid and start time): another thread or a nested call holds it."""
    folder = tmp_path / "run"
    with hold_run_lock(folder), pytest.raises(StPruneError, match=f"process {os.getpid()} on "), hold_run_lock(folder):
        pass
    assert not (folder / LOCK_NAME).exists()


def test_a_run_on_another_machine_is_respected(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(lock_of(1, host="gpu-node-7", boot_id="another-boot"))
    with pytest.raises(StPruneError) as error, hold_run_lock(folder):
        pass
    assert str(error.value) == (
        f"{folder} is in use by an st-prune run on another machine (process 1 on gpu-node-7, started "
        f"2025-01-01T00:00:00+00:00); if that machine is gone, delete {folder / LOCK_NAME} and run again"
    )


def test_only_rank_0_of_a_torchrun_run_takes_the_lock(recipe, tmp_path, other_run, stages_see, monkeypatch):
    """The other ranks never touch the lock (rank 0 holds it for all of them), so they are not refused by it."""
    output = tmp_path / "run"
    first = other_run(output)
    monkeypatch.setattr(RecipeRunner, "_run_beside_rank_0", lambda self: {"beside rank 0": True})
    monkeypatch.setenv("RANK", "1")
    assert RecipeRunner(load_recipe(recipe), output, log=lambda _: None).run() == {"beside rank 0": True}
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(StPruneError, match=f"process {first.pid} on "):
        RecipeRunner(load_recipe(recipe), output, log=lambda _: None).run()
    assert stages_see == [] and json.loads((output / LOCK_NAME).read_text())["pid"] == first.pid


# --- a lock whose run is gone -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "stale",
    [
        lambda: lock_of(ended_pid()),
        lambda: lock_of(os.getppid(), start_ticks=1),  # the pid is alive, but it is a later process than the writer
        lambda: lock_of(os.getppid(), boot_id="a-boot-before-the-last-restart"),
        lambda: lock_of(os.getpid(), start_ticks=1),  # a killed run's pid came back to this very process
    ],
    ids=["process-ended", "pid-reused", "machine-restarted", "own-pid-reused"],
)
def test_a_lock_left_by_a_killed_run_is_taken_over(stale, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(stale())
    with hold_run_lock(folder) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    assert os.listdir(folder) == []  # nothing left beside it either (the stale lock was moved aside, then removed)


@pytest.mark.parametrize("damaged", ["", '{"host": "vm"}', "not json"], ids=["empty", "no-pid", "not-json"])
def test_a_lock_that_names_no_process_is_refused_naming_the_file(damaged, tmp_path, monkeypatch):
    """Empty (a run killed between creating the lock and writing it) or damaged: whose it is cannot be told."""
    sleeps = []
    monkeypatch.setattr(run_lock.time, "sleep", sleeps.append)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(damaged)
    with pytest.raises(StPruneError) as error, hold_run_lock(folder):
        pass
    assert str(error.value) == (
        f"{folder / LOCK_NAME} holds no owner that can be read: if no st-prune run uses "
        f"{folder}, delete it and run again"
    )
    assert sum(sleeps) >= 1  # it was given time to be written first
    assert (folder / LOCK_NAME).read_text() == damaged  # whose it is cannot be told: the user decides


def test_a_run_takes_over_a_killed_runs_lock(recipe, tmp_path, stages_see, caplog):
    output = tmp_path / "run"
    output.mkdir()
    dead = ended_pid()
    (output / LOCK_NAME).write_text(lock_of(dead))  # all a run killed right after starting leaves
    with caplog.at_level(logging.INFO, logger="st_prune"):
        RecipeRunner(load_recipe(recipe), output, log=lambda _: None).run()
    assert f"{output}: took over the lock left by process {dead}, which is no longer running" in caplog.messages
    assert [holder["pid"] for holder in stages_see] == [os.getpid()] * 3
    assert not (output / LOCK_NAME).exists()


# --- released however the run ends ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ending", [None, RuntimeError("a stage failed"), KeyboardInterrupt()], ids=["finished", "error", "ctrl-c"]
)
def test_the_lock_is_held_through_the_stages_and_released_at_the_end(ending, recipe, tmp_path, monkeypatch):
    output, seen = tmp_path / "run", []

    def stages(self, names):
        seen.append(json.loads((output / LOCK_NAME).read_text())["pid"] if (output / LOCK_NAME).is_file() else None)
        if ending is not None and "train" in [stage.name for stage in names]:
            raise ending

    monkeypatch.setattr(RecipeRunner, "_run_stages", stages)
    runner = RecipeRunner(load_recipe(recipe), output, log=lambda _: None)
    if ending is None:
        runner.run()
    else:
        with pytest.raises(type(ending)):
            runner.run()
    assert seen == [os.getpid()] * len(seen) and len(seen) == (3 if ending is None else 2)
    assert not (output / LOCK_NAME).exists()
    assert (output / "run.json").is_file()  # the run itself went on as before


def test_a_lock_replaced_by_hand_is_not_removed(tmp_path):
    """Someone deleted the lock and another run took the folder: that run's lock stays when this one ends."""
    folder = tmp_path / "run"
    with hold_run_lock(folder) as lock:
        lock.write_text(lock_of(os.getppid()))
    assert json.loads(lock.read_text())["pid"] == os.getppid()
