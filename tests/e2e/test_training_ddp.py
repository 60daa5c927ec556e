"""Two torchrun processes share their in-batch negatives."""

from __future__ import annotations

import json

import pytest
from torchrun import run_two_processes


def test_two_processes_share_in_batch_negatives(tiny_llm, tmp_path):
    folder = tiny_llm("llama", layers=4)
    args = ["--model", str(folder), "--output", str(tmp_path / "run"), "--batch-size", "4", "--max-steps", "3"]
    result = run_two_processes("ddp_train_script.py", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / "run" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2 and report["global_step"] == 3
        # Each process scores its 4 anchors against positives + hard negatives of *both* processes.
        assert report["similarity_shapes"] == [[4, 2 * 4 * 2]] * 3
    assert reports[0]["weights_checksum"] == pytest.approx(
        reports[1]["weights_checksum"], abs=1e-6
    )  # DDP kept them in sync
    assert (tmp_path / "run" / "export" / "modules.json").is_file()  # written once, by rank 0
