"""More processes than GPUs is one line before any process group is joined."""

from __future__ import annotations


def test_more_processes_than_gpus_is_one_line_before_joining(monkeypatch):
    import pytest
    import torch

    from st_prune.errors import StPruneError
    from st_prune.util import distributed

    for name, value in (("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "3")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        StPruneError,
        match=r"^process 3 of this machine has no GPU of its own \(the machine has 2\): "
        r"start at most 2 processes per machine \(torchrun --nproc_per_node 2\)$",
    ):
        distributed.start()
    assert not torch.distributed.is_initialized()
