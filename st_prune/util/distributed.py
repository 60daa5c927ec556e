"""The processes of a ``torchrun`` / ``accelerate launch`` run, as ``st-prune run`` uses them.

A recipe run under N processes trains with DDP, but everything around training is one process's work: rank 0
scans and prunes while the others wait, every rank trains (in-batch negatives gathered across processes), and
rank 0 alone saves the adapter, exports, evaluates, writes cards and publishes while the others exit.

The launchers announce the processes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); the process
group itself is joined here, through accelerate's ``PartialState`` (the object the transformers trainer creates
lazily, and re-uses when the group exists), so that the other ranks can wait at a barrier while rank 0 scans.
"""

from __future__ import annotations

import datetime
import os

# Non-zero ranks wait at a barrier through rank 0's scan (minutes to an hour for a 7-9B model with the paper's
# 100 batches), longer than NCCL's default 10-minute timeout would allow. Training collectives use it too, so a
# rank that really hangs is noticed only after this long; torchrun stops every rank as soon as one fails, which
# covers the usual case (an error on rank 0) at once.
WAIT_TIMEOUT = datetime.timedelta(hours=4)


def world_size() -> int:
    """Processes of this run (1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 of a launched run, or a plain single process: the one that writes everything but checkpoints."""
    return rank() == 0


def start() -> None:
    """Join the process group now (gloo on CPU, NCCL on GPUs; a no-op for a single process or when joined)."""
    import torch

    if world_size() < 2 or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if torch.cuda.is_available() and local >= gpus:
        from st_prune.errors import StPruneError

        raise StPruneError(
            f"process {local} of this machine has no GPU of its own (the machine has {gpus}): start at "
            f"most {gpus} processes per machine (torchrun --nproc_per_node {gpus})"
        )
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available(), timeout=WAIT_TIMEOUT)


def wait_for_everyone() -> None:
    """A barrier across the processes (nothing in a single process)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def finish() -> None:
    """Leave the process group once every process got here: after training, rank 0 works alone."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
