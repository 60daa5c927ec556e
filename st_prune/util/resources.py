"""Wall time and peak memory of a block of work, for the runner's per-stage summary, and the release of a
stage's memory before the next.

Peak memory is the process's resident set size (RSS), sampled by a background thread: ``ru_maxrss`` alone only
gives the peak of the whole process so far, so a stage after a hungrier one would report the earlier stage's
peak. The sampler reads ``/proc/self/statm`` (Linux); elsewhere it falls back to ``ru_maxrss``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int | None:
    """Resident memory of this process now, or None where /proc is not available."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def process_peak_rss_bytes() -> int:
    """The highest RSS this process has had since it started (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _cuda():
    """torch.cuda where torch is already imported and a GPU is there; never imports torch itself (the CLI's
    fast verbs must not pay for it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda


def release_memory() -> None:
    """Free what the previous stage left: Python's reference cycles (models hold some) and the CUDA cache, so
    the next stage's peak is its own and a GPU's memory goes back to the pool."""
    import gc

    gc.collect()
    cuda = _cuda()
    if cuda is not None:
        cuda.empty_cache()


@dataclass
class Usage:
    """What one block of work took: wall seconds, the peak RSS seen while it ran and, on a GPU, the peak of
    ``torch.cuda.max_memory_allocated`` (None without one)."""

    seconds: float = 0.0
    peak_rss_bytes: int = 0
    peak_gpu_bytes: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def peak_rss_gb(self) -> float:
        return self.peak_rss_bytes / 1e9

    @property
    def peak_gpu_gb(self) -> float | None:
        return None if self.peak_gpu_bytes is None else self.peak_gpu_bytes / 1e9


class measure_usage:
    """``with measure_usage() as usage: ...`` then ``usage.seconds`` and ``usage.peak_rss_bytes``."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.usage = Usage()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self.usage._stop.wait(self.interval):
            rss = current_rss_bytes()
            if rss is not None and rss > self.usage.peak_rss_bytes:
                self.usage.peak_rss_bytes = rss

    def __enter__(self) -> Usage:
        self._cuda = _cuda()
        if self._cuda is not None:
            self._cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()
        self.usage.peak_rss_bytes = current_rss_bytes() or 0
        if self.usage.peak_rss_bytes:
            self._thread = threading.Thread(target=self._sample, name="st-prune-rss", daemon=True)
            self._thread.start()
        return self.usage

    def __exit__(self, *exc_info: object) -> None:
        self.usage.seconds = time.perf_counter() - self._start
        if self._cuda is not None:
            self.usage.peak_gpu_bytes = int(self._cuda.max_memory_allocated())
        self.usage._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = current_rss_bytes()
        if rss is None:  # no /proc: the process-wide peak is the best bound available
            self.usage.peak_rss_bytes = process_peak_rss_bytes()
        else:
            self.usage.peak_rss_bytes = max(self.usage.peak_rss_bytes, rss)
