"""bench/gpu_check.py --tiny: the GPU check's own stages at tiny shapes on CPU, so the script cannot rot while no GPU
is lent; and the shipped real-shape configs agree with the recipes of the same bases."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gpu_check import ARCHITECTURES, ROOT

# The tiny run takes ~30 s on 2 cores (five architectures: load, scan, LoRA steps, export, reload): an end-to-end
# test (this folder's tests carry the e2e marker, so `-m "not e2e"` deselects it).

LLAMA_STAGES = [
    "load_full",
    "forward_full",
    "scan",
    "prune_large",
    "train_large",
    "load_small",
    "train_small",
    "train_small_cached",
    "export_small",
]
OTHER_STAGES = ["load_full", "forward_full", "cut_small", "train_export_small", "reload_small"]


def test_tiny_run_writes_a_filled_row_per_architecture(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--output", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["mode"] == "tiny (CPU)" and data["versions"]["torch"]
    assert list(data["architectures"]) == list(ARCHITECTURES)
    for name, arch in data["architectures"].items():
        stages = arch["stages"]
        assert arch["status"] == "ok", (name, arch["status"])
        assert list(stages) == (LLAMA_STAGES if name == ARCHITECTURES[0] else OTHER_STAGES), name
        assert arch["parameters"] > 0 and arch["layers"] > arch["small"] >= 1
        for stage, record in stages.items():
            assert "error" not in record and record["seconds"] >= 0 and record["peak_gib"] > 0, (name, stage)
        assert stages["forward_full"]["tokens_per_s"] > 0
        train = stages.get("train_small") or stages["train_export_small"]
        assert train["step_s"] > 0 and train["train_tokens_per_s"] > 0
        # step time / (kept / total layers) is the full-depth step time the cut implies: larger than the step itself
        assert train["step_per_layer_ratio_s"] > train["step_s"]
        exported = stages.get("export_small") or stages["train_export_small"]
        reloaded = stages.get("export_small") or stages["reload_small"]
        assert exported["size_gb"] > 0 and reloaded["reload_min_cosine"] > 0.999, name

    scan = data["architectures"][ARCHITECTURES[0]]["stages"]["scan"]
    assert scan["finite_curve"] and scan["scan_per_forward"] > 0 and scan["batches"] == 2

    markdown = (tmp_path / "gpu_check.md").read_text()
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in ARCHITECTURES
    }
    assert list(rows) == list(ARCHITECTURES)
    for name, cells in rows.items():
        assert "–" not in cells and cells[-1] == "ok", (name, cells)
    for stage in LLAMA_STAGES:  # the stage-by-stage table of the recipe's path
        assert f"| {stage} |" in markdown
