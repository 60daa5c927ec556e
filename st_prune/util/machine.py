"""The machine a figure was measured on, and the tokens/s measurement every stage reports.

Stage records (scan, export, deploy, training) name the hardware beside each speed and time, so a figure copied
into a card or the README always says where it came from; the bench scripts use the same description.
"""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path


def machine_description() -> str:
    """E.g. 'NVIDIA H100 80GB HBM3 (CUDA, 1 GPU(s))' or 'Intel(R) Xeon(R) Processor @ 2.50GHz, 2 cores, torch
    2.13.0+cpu on 2 threads': names hardware, never a host or path."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA, {torch.cuda.device_count()} GPU(s))"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()}, {cores} cores, torch {torch.__version__} on {torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The processor's marketing name where the OS tells it (Linux), else its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return f"{platform.processor() or platform.machine() or 'unknown'} CPU"


def measure_tokens_per_second(model, texts: list[str], batch_size: int = 16, repeats: int = 1) -> float:
    """Non-padding tokens encoded per second (after one warm-up batch)."""
    import torch

    tokens = sum(
        int(model.preprocess(texts[i : i + batch_size])["attention_mask"].sum())
        for i in range(0, len(texts), batch_size)
    )
    with torch.inference_mode():
        model.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)
        start = time.perf_counter()
        for _ in range(repeats):
            model.encode(texts, batch_size=batch_size, show_progress_bar=False)
        elapsed = time.perf_counter() - start
    return tokens * repeats / max(elapsed, 1e-9)


def speed_texts(dataset, count: int = 64) -> list[str]:
    """A fixed, reproducible set of documents for the tokens/s measurement."""
    indices = random.Random(0).sample(range(len(dataset)), min(count, len(dataset)))
    return [dataset[index]["positive"] for index in indices]
