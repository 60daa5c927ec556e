"""The GPU check's configs, architectures and published sizes (bench/gpu_configs)."""

from __future__ import annotations

from paths import ROOT

CONFIGS = ROOT / "bench" / "gpu_configs"


ARCHITECTURES = (
    "llama-3-8b-instruct",
    "mistral-7b-instruct-v0.2",
    "qwen2-7b-instruct",
    "phi-3-mini-4k-instruct",
    "qwen3-8b",
)


#: The bases' published sizes (their model cards, LM head included), in billions of parameters.
PUBLISHED_SIZES = {
    "llama-3-8b-instruct": 8.03,
    "mistral-7b-instruct-v0.2": 7.24,
    "qwen2-7b-instruct": 7.62,
    "phi-3-mini-4k-instruct": 3.82,
    "qwen3-8b": 8.19,
}
