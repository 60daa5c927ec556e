"""Exports are staged beside their destination: a killed export's leftovers are removed by the next export to the
same destination (only those), and final files and folders get the umask's modes, not mkdtemp's/mkstemp's."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from st_prune import encoder_from_llm, export_model
from st_prune.util.files import write_json_atomic, write_text_atomic
from st_prune.util.staging import MARKER

KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    import st_prune.model.export as export
    from st_prune import encoder_from_llm

    model = encoder_from_llm(sys.argv[1], layers=1)
    def killed(*args, **kwargs):  # the weights are written: die as an OOM kill or `kill -9` would
        os.kill(os.getpid(), signal.SIGKILL)
    export._rewrite_legacy_configs = killed
    export.export_model(model, sys.argv[2])
    """
)


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


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_exports_and_written_files_get_the_umask_modes(tiny_llm, tmp_path, umask, mask, folder_mode, file_mode):
    umask(mask)
    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    output = export_model(model, tmp_path / "encoder", extra_files={"scan/l3prune.json": "{}"})
    modes = {
        str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode) for path in [output, *output.rglob("*")]
    }
    assert modes["encoder"] == folder_mode
    expected = {name: folder_mode if (tmp_path / name).is_dir() else file_mode for name in modes}
    assert modes == expected

    write_json_atomic(tmp_path / "models" / "zoo.json", [])
    write_text_atomic(tmp_path / "models" / "README.md", "# zoo\n")
    assert stat.S_IMODE((tmp_path / "models" / "zoo.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "models" / "README.md").stat().st_mode) == file_mode
