"""A real SIGINT or SIGTERM stops `st-prune scan` (another process) in one line."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys

import pytest
from interrupts import SOURCE


@pytest.mark.parametrize(
    "sent, status, how",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_real_signal_stops_a_scan_in_one_line(sent, status, how, tiny_llm, tmp_path):
    """`python -m st_prune.cli scan` on a scan that would take minutes, stopped by a real signal mid-way."""
    data = tmp_path / "many.jsonl"
    data.write_text(
        "".join(
            json.dumps({"anchor": f"the cat {i}", "positive": f"a cat {i}", "negative": f"no dog {i}"}) + "\n"
            for i in range(20000)
        )
    )
    argv = [
        "scan",
        str(tiny_llm()),
        "--data",
        str(data),
        "--batch-size",
        "4",
        "--num-batches",
        "5000",
        "--output",
        str(tmp_path / "scan.json"),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }

    def default_signals():  # a test runner started in the background ignores SIGINT, and its children inherit that
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "st_prune.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            preexec_fn=default_signals,
        )
        try:
            for line in process.stdout:  # the data is read; the model loads and the scan starts
                if line.startswith("data: "):
                    break
            process.send_signal(sent)
            returned = process.wait(timeout=120)
        finally:
            process.kill()
            process.wait()
    err = (tmp_path / "stderr").read_text()
    assert "Traceback" not in err, err[-3000:]
    assert returned == status, err[-3000:]
    ours = [line for line in err.replace("\r", "\n").splitlines() if "st-prune scan:" in line]
    assert ours == [
        f"st-prune scan: {how}; nothing was written (the scan writes {tmp_path / 'scan.json'} when it "
        f"ends); start again with `{shlex.join(['st-prune', *argv])}`"
    ], err[-3000:]
    assert not (tmp_path / "scan.json").exists()
