"""An export killed half-way (SIGKILL, another process) leaves a staging folder the next export removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from staging import KILLED_EXPORT

from st_prune import encoder_from_llm, export_model
from st_prune.util.staging import MARKER


def _marked(folder: Path, pid: int) -> Path:
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"host": os.uname().nodename, "pid": pid}))
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    return folder


def test_the_next_export_removes_what_a_killed_export_left_beside_the_same_destination(tiny_llm, tmp_path):
    llm = tiny_llm("llama", layers=2)
    destination = tmp_path / "encoder"
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(llm), str(destination)], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".encoder.st-prune-staging-*"))
    assert len(leftovers) == 1 and (leftovers[0] / MARKER).is_file() and (leftovers[0] / "modules.json").is_file()
    assert not destination.exists()

    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    keep = {
        # another destination's stale staging: not this export's business
        _marked(tmp_path / ".encoder-large.st-prune-staging-abc", dead.pid),
        # a concurrent export to the same destination, still running (the parent of this test process)
        _marked(tmp_path / ".encoder.st-prune-staging-live", os.getppid()),
        # the exact prefix but no marker: not written by st-prune
        tmp_path / ".encoder.st-prune-staging-mine",
        # the user's own hidden folder
        tmp_path / ".encoder.backup",
    }
    for folder in keep:
        folder.mkdir(exist_ok=True)

    model = encoder_from_llm(str(llm), layers=1)
    assert export_model(model, destination) == destination
    assert not any(path.exists() for path in leftovers)
    assert {path for path in tmp_path.iterdir() if path.name.startswith(".")} == keep
    assert not (destination / MARKER).exists()  # the marker never reaches the published folder
    assert json.loads((destination / "modules.json").read_text())[1]["type"] == "sentence_transformers.models.Pooling"
