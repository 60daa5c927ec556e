"""Run by tests/e2e/test_runner_ddp.py under ``torchrun --nproc_per_node 2`` (gloo on CPU): ``st-prune run`` exactly as a
user starts it (``python -m st_prune.cli run RECIPE ...``), with the training loss recording what it saw.

Usage: ``ddp_run_script.py RECORD_DIR run RECIPE --output DIR ...``. The loss is ``ddp_train_script.RecordingLoss``
(the shape of each query-to-document similarity matrix); each process writes ``RECORD_DIR/rank<N>.json`` with its
exit status and those shapes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import ddp_train_script  # beside this file: the recording loss of the `st-prune train` DDP test

from st_prune import cli
from st_prune.training import trainer as training


def main() -> int:
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    training.MultipleNegativesRankingLoss = ddp_train_script.RecordingLoss  # what build_loss constructs, here only
    status = cli.main(argv)
    rank = int(os.environ.get("RANK", "0"))
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{rank}.json").write_text(
        json.dumps({"rank": rank, "status": status, "similarity_shapes": ddp_train_script.SHAPES})
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
