"""Two CPU processes under torchrun (gloo), as a user starts them: the one way the DDP tests launch a helper script."""

from __future__ import annotations

import os
import subprocess
import sys

from paths import HELPERS, ROOT


def run_two_processes(script: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 tests/helpers/SCRIPT ARGS`` with one thread a process (two
    processes on a 2-core machine) and the checkout importable, its output captured."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(HELPERS / script), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
