"""`st-prune prune` in a shell under `ulimit -f`: one line, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys

from bad_input import _left_in
from paths import ROOT


# --- case 9: a full disk or a file-size limit while writing -----------------------------------------------------
def test_prune_under_a_file_size_limit_is_one_line_and_leaves_nothing(tiny_llm, tmp_path):
    """`ulimit -f 50` (50 KiB): the 2-layer export's weights (~120 KB) cannot be written."""
    command = f"ulimit -f 50; exec {sys.executable} -m st_prune.cli prune {tiny_llm()} --layers 2 --output out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("st-prune ")]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines == [
        (
            "st-prune prune: error: a file exceeds the file-size limit while writing out; raise the limit "
            "(`ulimit -f unlimited`), or choose another --output"
        )
    ]
    assert _left_in(tmp_path) == set()  # neither the folder nor a staging folder
