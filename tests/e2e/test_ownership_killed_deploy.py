"""A deploy killed half-way (SIGKILL, another process) leaves nothing in the model folder; the next write cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ownership_files import REPO, snapshot

from st_prune.util import ownership


def _staging_of(folder: Path) -> Path | None:
    """A deploy's staging folder of ``folder`` that already holds an ONNX folder (beside it, or inside it)."""
    candidates = [*folder.parent.glob(f".{folder.name}.st-prune-staging-*"), *folder.glob(".deploy-staging-*")]
    return next((path for path in candidates if (path / "onnx").is_dir()), None)


def test_case7_a_killed_deploy_leaves_nothing_in_the_model_folder_and_the_next_write_cleans_up(tiny_llm, tmp_path):
    pytest.importorskip("onnxruntime")
    from st_prune import encoder_from_llm, export_model
    from st_prune.hub.publish import scan_folder

    folder = export_model(encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1), tmp_path / "model")
    before = snapshot(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "st_prune.cli", "deploy", str(folder), "--onnx"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while _staging_of(folder) is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _staging_of(folder) is not None, "the deploy finished or failed before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert snapshot(folder) == before  # the staging folder sits beside the model folder, never inside it
    assert sorted(scan_folder(folder)) == sorted(
        name for name, content in before.items() if content is not None and name != ownership.MANIFEST
    )

    # An older deploy's leftover inside the folder: never published, removed by the next deploy with the one above.
    (folder / ".deploy-staging-ab12cd34" / "onnx").mkdir(parents=True)
    (folder / ".deploy-staging-ab12cd34" / "onnx" / "model.onnx").write_bytes(b"391 MB")
    assert ".deploy-staging-ab12cd34/onnx/model.onnx" not in scan_folder(folder)
    from st_prune.deploy.deploy import deploy

    deploy(folder, backends=["onnx"])
    assert _staging_of(folder) is None and not (folder / ".deploy-staging-ab12cd34").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
