"""The paper's scale on one GPU in one call: st-prune's own code paths on random weights of the real 7-9B shapes.

Real weights cannot reach the lent GPU machine, but real *shapes* can: ``bench/gpu_configs/`` holds the published
``config.json`` of the paper's four bases and Qwen3-8B, and random weights of exactly those shapes exercise every
kernel, memory peak and timing that real weights would (bf16, gradient checkpointing, SDPA, Phi-3's fused
projections, Qwen2's q/k/v biases, Phi-3's sliding window, Qwen3's q/k norms). Each base becomes a local folder
holding its real config, a tokenizer with its real special-token ids, and a checkpoint of one tensor (the final
norm): transformers initialises every missing weight itself, directly on the GPU (``device_map``), so nothing of
16 GB is written or read, and the load still goes through ``encoder_from_llm`` / ``TruncatedLLM`` like a Hub
checkpoint does. Text is the shipped triplets (``st_prune/recipes/data/triplets-small.jsonl``), sentences of one
task joined into texts of at least the recipe's length, so every text is truncated to exactly that many tokens.

Meta-Llama-3-8B-Instruct runs the recipe's own path at the recipe's own sizes (``st_prune/recipes/
llama-3-8b-instruct.yaml``: scan and training batch 64, 512 tokens, bf16, gradient checkpointing, LoRA r16):
L3Prune scan of a few batches (timed against one plain forward of the same batches), the prune to the large and
small depths, LoRA steps on each, a few more with the cached (GradCache) loss, and the export of the small cut
(reloaded with plain sentence-transformers and compared). The other four: load at full depth, cut to a quarter
of their layers (the paper's 75 % rule), a few training steps at batch 8 through ``train_pruned`` (train, merge,
export in one public call), and the export reloaded.

Time budget on one H100 (estimates from FLOPs; ``--budget-s`` stops starting new stages once it is spent, and
each stage's size is a flag):

| stage                                                     | size (flag)                                       | ~s  |
|-----------------------------------------------------------|---------------------------------------------------|-----|
| imports, CUDA init, texts, five tokenizers                |                                                   |  20 |
| Llama-3-8B: load 32 layers, bf16, random init on the GPU  |                                                   |  10 |
| forward at full depth, 64 texts x 512 tokens              | --infer-batch 64, --repeats 2                     |   5 |
| L3Prune scan and the plain forward of the same batches    | --scan-batches 3 (x recipe batch 64, 512 tokens)  |  25 |
| prune to large, forward                                   | --llama-large 25                                  |   3 |
| 10 LoRA steps, batch 64 x 3 texts x 512 tokens (~12 s)    | --large-steps 10                                  | 135 |
| load the small cut, forward                               | --llama-small 7                                   |   5 |
| 10 LoRA steps on the small cut (~3.5 s)                   | --small-steps 10                                  |  40 |
| cached loss (GradCache, mini-batch 32) steps              | --cached-steps 3                                  |  20 |
| export the small cut (4.1 GB) and reload it               |                                                   |  25 |
| Mistral, Qwen2, Phi-3, Qwen3: load, forward, cut, train,  | --other-steps 5, --other-batch 8,                 | 140 |
|   export (2-5 GB) and reload, ~35 s each                  |   --other-fraction 0.75                           |     |
| total                                                     | --budget-s 480                                    | 430 |

The depths: the paper's per-model picks are not in this repository (the recipes pick by scanning real weights,
which random weights cannot stand in for), so ``--llama-large 25`` and ``--llama-small 7`` are the depths whose
parameter shares match the paper's averages: large prunes 21 % of the parameters (25 of 32 layers: 20.3 %),
small 74 % (7 layers: 72.7 %), counted on the encoder (embeddings + layers + norm, no LM head).

Reported per stage: seconds and peak memory (``torch.cuda.max_memory_allocated``, reset at each stage's start; on
CPU the process's peak resident memory), scan time / plain forward, training step time / kept-layer ratio (the
full-depth step time the cut implies), tokens/s of inference at full, large and small depth and of training.
The JSON and a Markdown table are rewritten after every stage, so a run cut short keeps what it measured.

    python bench/gpu_check.py --output $OUT             # on the GPU machine: see bench/README.md for the one line
    python bench/gpu_check.py --tiny                    # CPU, tiny sizes, the same five architectures (~1 min)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this tree's st_prune, also where it is not installed (the GPU machine)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local folder; the GPU machine has no network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIGS = Path(__file__).resolve().parent / "gpu_configs"
TRIPLETS = ROOT / "st_prune" / "recipes" / "data" / "triplets-small.jsonl"
MAIN = "llama-3-8b-instruct"
#: Each folder name is also the name of the shipped recipe of that base (pooling, length, dtype, training).
ARCHITECTURES = (MAIN, "mistral-7b-instruct-v0.2", "qwen2-7b-instruct", "phi-3-mini-4k-instruct", "qwen3-8b")

#: --tiny shapes: the real config with these sizes, so every model-type-specific key still applies.
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
TINY_LAYERS = {MAIN: 8}  # the others: 4
#: Size of the offline tokenizer's vocabulary (ids 0..VOCAB-1), below 32,000, the smallest real one (Mistral's).
VOCAB = 16_000
CHAT_TEMPLATE = "{% for message in messages %}<{{ message['role'] }}>{{ message['content'] }}\n{% endfor %}"
GIB = 2**30


class BudgetSpent(Exception):
    """The time budget ran out before a stage started."""


# =====================================================================================================================
# Settings
# =====================================================================================================================
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny shapes and sizes, the same five architectures")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "out" / "gpu_check",
        help="folder for gpu_check.json and gpu_check.md (default bench/out/gpu_check)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="scratch folder for the model folders and exports (default: a temporary folder, removed)",
    )
    parser.add_argument(
        "--archs", default=",".join(ARCHITECTURES), help="comma-separated subset of: " + ", ".join(ARCHITECTURES)
    )
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --tiny)")
    parser.add_argument("--attn", default=None, help="attn_implementation for every model (default: transformers')")
    parser.add_argument("--budget-s", type=float, default=None, help="start no stage after this many seconds (480)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per text (default: the recipe's, 512)")
    parser.add_argument("--batch", type=int, default=None, help="Llama training batch (default: the recipe's, 64)")
    parser.add_argument("--scan-batch", type=int, default=None, help="Llama scan batch (default: the recipe's, 64)")
    parser.add_argument("--scan-batches", type=int, default=None, help="scan batches (3)")
    parser.add_argument("--llama-large", type=int, default=None, help="large depth of Llama-3-8B (25 of 32)")
    parser.add_argument("--llama-small", type=int, default=None, help="small depth of Llama-3-8B (7 of 32)")
    parser.add_argument("--large-steps", type=int, default=None, help="LoRA steps on the large cut (10)")
    parser.add_argument("--small-steps", type=int, default=None, help="LoRA steps on the small cut (10)")
    parser.add_argument("--cached-steps", type=int, default=None, help="cached-loss steps on the small cut (3)")
    parser.add_argument("--cached-mini-batch", type=int, default=None, help="GradCache mini-batch (32)")
    parser.add_argument("--other-steps", type=int, default=None, help="training steps of the other four (5)")
    parser.add_argument("--other-batch", type=int, default=None, help="training batch of the other four (8)")
    parser.add_argument(
        "--other-fraction",
        type=float,
        default=0.75,
        help="share of layers the other four drop (0.75: they keep int(L/4))",
    )
    parser.add_argument("--infer-batch", type=int, default=None, help="texts per timed inference forward (64)")
    parser.add_argument("--repeats", type=int, default=None, help="timed inference forwards, best kept (2)")
    parser.add_argument("--keep-exports", action="store_true", help="keep the exported folders in --work-dir")
    args = parser.parse_args(argv)
    gpu = {
        "budget_s": 480.0,
        "scan_batches": 3,
        "llama_large": 25,
        "llama_small": 7,
        "large_steps": 10,
        "small_steps": 10,
        "cached_steps": 3,
        "cached_mini_batch": 32,
        "other_steps": 5,
        "other_batch": 8,
        "infer_batch": 64,
        "repeats": 2,
    }
    tiny = {
        "budget_s": 600.0,
        "seq_len": 48,
        "batch": 4,
        "scan_batch": 4,
        "scan_batches": 2,
        "large_steps": 2,
        "small_steps": 2,
        "cached_steps": 1,
        "cached_mini_batch": 2,
        "other_steps": 2,
        "other_batch": 4,
        "infer_batch": 4,
        "repeats": 1,
    }
    for name, value in {**gpu, **(tiny if args.tiny else {})}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.tiny:
        args.device = args.device or "cpu"
        scale = TINY_LAYERS[MAIN] / 32  # the paper's depths, scaled to the tiny Llama's 8 layers
        args.llama_large, args.llama_small = (
            max(2, round(args.llama_large * scale)),
            max(1, round(args.llama_small * scale)),
        )
    unknown = sorted(set(args.archs.split(",")) - set(ARCHITECTURES))
    if unknown:
        parser.error(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    return args


# =====================================================================================================================
# The report: one JSON and one Markdown file, rewritten after every stage
# =====================================================================================================================
class Report:
    def __init__(self, args: argparse.Namespace, device: str) -> None:
        import torch

        self.args, self.device, self.start = args, device, time.perf_counter()
        self.data: dict[str, Any] = {
            "mode": "tiny (CPU)" if args.tiny else "real shapes",
            "device": torch.cuda.get_device_name(0)
            if device.startswith("cuda")
            else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} threads)",
            "versions": versions(),
            "environment_problems": environment_problems(),
            "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
            "architectures": {},
            "total_s": 0.0,
        }
        args.output.mkdir(parents=True, exist_ok=True)

    def arch(self, name: str) -> dict[str, Any]:
        return self.data["architectures"].setdefault(name, {"status": "running", "stages": {}})

    @contextmanager
    def stage(self, arch: str, name: str, **facts: Any):
        """Time ``name`` and its peak memory; the body adds its figures to the yielded dict."""
        if self.elapsed() > self.args.budget_s:
            raise BudgetSpent(f"time budget of {self.args.budget_s:.0f} s spent before stage {name}")
        record: dict[str, Any] = dict(facts)
        self.arch(arch)["stages"][name] = record
        print(f"[{self.elapsed():6.1f}s] {arch}: {name} ...", flush=True)
        peak = PeakMemory(self.device)
        record["start_gib"] = round(peak.current() / GIB, 2)  # what earlier stages left allocated: a leak shows here
        start = time.perf_counter()
        try:
            yield record
        except Exception as error:
            record["error"] = one_line(error)
            raise
        finally:
            sync(self.device)
            record["seconds"] = round(time.perf_counter() - start, 2)
            record["peak_gib"] = round(peak.read() / GIB, 2)
            print(f"[{self.elapsed():6.1f}s] {arch}: {name} {short(record)}", flush=True)
            self.write()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def write(self) -> None:
        self.data["total_s"] = round(self.elapsed(), 1)
        write_atomic(self.args.output / "gpu_check.json", json.dumps(self.data, indent=2) + "\n")
        write_atomic(self.args.output / "gpu_check.md", markdown(self.data))


class PeakMemory:
    """Peak memory since construction: CUDA's allocator peak, or the process's resident peak on CPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # Linux: writing 5 resets VmHWM (the resident high-water mark) to the current resident size
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass

    def read(self) -> int:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated()
        return self._status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def current(self) -> int:
        import torch

        return torch.cuda.memory_allocated() if self.cuda else self._status("VmRSS")

    @staticmethod
    def _status(field: str) -> int:
        """A size from /proc/self/status in bytes (0 where there is none)."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    found: dict[str, str | None] = {"python": platform.python_version(), "cuda": torch.version.cuda}
    for name in (
        "torch",
        "transformers",
        "sentence-transformers",
        "peft",
        "accelerate",
        "datasets",
        "tokenizers",
        "huggingface-hub",
        "safetensors",
        "pyarrow",
        "pydantic",
        "numpy",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def environment_problems() -> list[str]:
    """pyproject.toml's dependencies, and theirs one level down, that are missing here or outside their range: what
    a carried wheel did not cover on the GPU machine (bench/gpu_carry.sh), said before anything fails on it."""
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no TOML reader in the standard library; nothing to check against
        return []
    direct = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    problems: list[str] = []
    checks = [(Requirement(text), "st-prune") for text in direct]
    for index, (requirement, wanted_by) in enumerate(checks):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{requirement} (for {wanted_by}): not installed")
            continue
        if installed not in requirement.specifier.filter([installed], prereleases=True):
            problems.append(f"{requirement} (for {wanted_by}): {installed} installed")
        if index < len(direct):  # one level down: what the installed dependency itself needs
            checks += [(Requirement(text), requirement.name) for text in requires(requirement.name) or []]
    return problems


def write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def short(record: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in record.items() if not isinstance(value, (list, dict)))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def release(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# =====================================================================================================================
# Model folders: the real config, a tokenizer with the real special ids, a one-tensor checkpoint
# =====================================================================================================================
def read_config(name: str, tiny: bool) -> dict[str, Any]:
    config = json.loads((CONFIGS / name / "config.json").read_text())
    if tiny:
        real_heads, real_kv = (
            config["num_attention_heads"],
            config.get("num_key_value_heads", config["num_attention_heads"]),
        )
        config.update(TINY_SHAPE, num_hidden_layers=TINY_LAYERS.get(name, 4))
        config["num_key_value_heads"] = (
            TINY_SHAPE["num_attention_heads"] if real_kv == real_heads else 1
        )  # MHA stays MHA
        if "head_dim" in config:
            config["head_dim"] = 16
    return config


#: Qwen2's pre-tokenizer split (transformers' Qwen2Tokenizer): the offline tokenizer uses Qwen2Tokenizer's own
#: normalizer, pre-tokenizer and decoder, because transformers 5 rebuilds a qwen2 model's tokenizer from its vocab and
#: merges with that pipeline, whatever tokenizer.json says; any other pipeline would tokenize differently there.
QWEN_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def byte_level_pipeline(tokenizer) -> None:
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()


def pre_token_count():
    """Pre-tokens of a text under the offline tokenizer's pipeline: a lower bound on its token count."""
    from tokenizers import Tokenizer, models

    tokenizer = Tokenizer(models.BPE())
    byte_level_pipeline(tokenizer)
    return lambda text: len(tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)))


def train_bpe(texts: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges learned from the triplets, ids 0..VOCAB-1: ids 0-2 are
    ``<unk> <s> </s>`` (their ids in Mistral and Phi-3), and every other base's special tokens sit above 32,000."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    byte_level_pipeline(tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<unk>", "<s>", "</s>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [
        tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]
    ]


def build_tokenizer(essentials: dict[str, Any], bpe: tuple[dict[str, int], list[tuple[str, str]]]):
    """The triplets' byte-level BPE with the base's special tokens at their real ids (BOS, EOS, pad, chat tokens) and
    its BOS rule: no real tokenizer is needed for real shapes, and every id stays inside every vocabulary (the
    embedding rows they select are random anyway)."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    specials = {
        essentials[f"{kind}_token"]: essentials[f"{kind}_token_id"]
        for kind in ("bos", "eos", "pad", "unk")
        if essentials.get(f"{kind}_token")
    }
    specials.update(essentials.get("other_special_tokens", {}))
    vocab, merges = bpe
    tokenizer = Tokenizer(models.BPE(vocab={**vocab, **specials}, merges=merges))
    byte_level_pipeline(tokenizer)
    tokenizer.add_special_tokens(list(specials))
    if essentials["add_bos_token"]:
        bos = essentials["bos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, specials[bos])]
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=essentials.get("bos_token"),
        eos_token=essentials["eos_token"],
        pad_token=essentials.get("pad_token"),
        unk_token=essentials.get("unk_token"),
        model_max_length=essentials["model_max_length"],
    )
    wrapped.chat_template = CHAT_TEMPLATE  # every base has one: the trap of text routed through a chat template stays
    return wrapped


def make_model_folder(name: str, folder: Path, bpe, tiny: bool) -> dict[str, Any]:
    """config.json (the published file itself at real shapes), tokenizer files, and a checkpoint of the final norm
    alone: transformers initialises every other weight at load, on the device named by ``device_map``."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = read_config(name, tiny)
    if tiny:
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    else:
        shutil.copyfile(CONFIGS / name / "config.json", folder / "config.json")
    dtype = torch.float32 if tiny else torch.bfloat16
    save_file(
        {"model.norm.weight": torch.ones(config["hidden_size"], dtype=dtype)},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    essentials = json.loads((CONFIGS / name / "tokenizer_essentials.json").read_text())
    build_tokenizer(essentials, bpe).save_pretrained(folder)
    return config


# =====================================================================================================================
# Texts: the shipped triplets joined into texts of at least the training length
# =====================================================================================================================
def read_triplets() -> list[dict[str, str]]:
    return [json.loads(line) for line in TRIPLETS.read_text(encoding="utf-8").splitlines() if line.strip()]


def long_rows(triplets: list[dict[str, str]], seq_len: int, rows_per_task: int, seed: int = 42):
    """``rows_per_task`` rows per task (instruction) whose anchor, positive and negative each join random triplets'
    texts of that column until they hold ``seq_len`` + 8 pre-tokens, so that every text truncates to ``seq_len`` tokens."""
    from datasets import Dataset

    count = pre_token_count()
    rng = random.Random(seed)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in triplets:
        by_task.setdefault(row["task"], []).append(row)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": [], "instruction": []}
    lengths: dict[str, int] = {}
    for task in sorted(by_task):
        items = by_task[task]
        for _ in range(rows_per_task):
            for column in ("anchor", "positive", "negative"):
                parts, count_so_far = [], 0
                while count_so_far < seq_len + 8:
                    text = rng.choice(items)[column]
                    if text not in lengths:
                        lengths[text] = count(text)
                    parts.append(text)
                    count_so_far += lengths[text]
                columns[column].append(" ".join(parts))
            columns["instruction"].append(items[0]["instruction"])
    return Dataset.from_dict(columns)


# =====================================================================================================================
# Measurements
# =====================================================================================================================
def inference_tokens_per_s(model, texts: list[str], repeats: int, device: str) -> dict[str, float]:
    """Tokens per second of one forward of ``texts`` (inference mode, pooling and Normalize included), best of
    ``repeats`` after one warm-up."""
    import torch

    features = {
        key: value.to(device) if isinstance(value, torch.Tensor) else value
        for key, value in model.preprocess(texts).items()
    }
    tokens = int(features["attention_mask"].sum())
    best = math.inf
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            model(dict(features))
            sync(device)
            if attempt:
                best = min(best, time.perf_counter() - start)
    return {"tokens": tokens, "forward_s": round(best, 4), "tokens_per_s": round(tokens / best)}


def plain_forward_s(model, batches, device: str) -> float:
    """What the scan's batches cost in plain forwards: the same tokenization and prompt groups, no hooks."""
    import torch

    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            by_prompt: dict[str | None, list[str]] = {}
            for column in batch.texts:
                by_prompt.setdefault(batch.prompts.get(column), []).append(column)
            for prompt, names in by_prompt.items():
                texts = [text for name in names for text in batch.texts[name]]
                features = {
                    key: value.to(device) if isinstance(value, torch.Tensor) else value
                    for key, value in model.preprocess(texts, prompt=prompt).items()
                }
                model(features)
    sync(device)
    return time.perf_counter() - start


def step_timer(device: str):
    """A trainer callback that keeps every optimizer step's wall seconds (the device synchronised at both ends)."""
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.train_s = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self._train_start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            sync(device)
            self.train_end = time.perf_counter()
            self.train_s = self.train_end - self._train_start

        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimes()


def step_figures(timer, tokens_per_step: int, kept: int, total: int) -> dict[str, Any]:
    """Median step (the first, with its one-off kernel selection, apart), the full-depth step time it implies
    (step / (kept / total)), and training tokens per second."""
    steady = timer.seconds[1:] or timer.seconds
    step = statistics.median(steady)
    return {
        "first_step_s": round(timer.seconds[0], 3),
        "step_s": round(step, 3),
        "step_per_layer_ratio_s": round(step / (kept / total), 3),
        "train_tokens_per_s": round(tokens_per_step / step),
    }


def training_config(recipe, seq_len: int, tiny: bool, **changes: Any):
    """The recipe's own TrainingConfig with this check's sizes: no checkpoints, every step's loss logged; on CPU
    (--tiny) bf16 is left to st-prune's auto (off), since the recipe's bf16=True is refused there."""
    base = recipe.training.config()
    if tiny:
        base = base.replace(bf16=None)
    return base.replace(
        max_seq_length=seq_len,
        warmup_steps=None,
        save_steps=100_000,
        logging_steps=1,
        training_arguments={"disable_tqdm": True},
        **changes,
    )


def cosine_to_reload(model, folder: Path, texts: list[str], device: str) -> float:
    """Lowest cosine between the in-memory model's embeddings and those of its export loaded with plain
    sentence-transformers (the export is what users download)."""
    import torch
    from sentence_transformers import SentenceTransformer

    reloaded = SentenceTransformer(str(folder), device=device)
    with torch.inference_mode():
        ours = model.encode(texts, convert_to_tensor=True).float()
        theirs = reloaded.encode(texts, convert_to_tensor=True).float()
    del reloaded
    return round(float(torch.nn.functional.cosine_similarity(ours, theirs.to(ours.device)).min()), 5)


def folder_gb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e9, 3)


# =====================================================================================================================
# The runs
# =====================================================================================================================
class Check:
    def __init__(self, args: argparse.Namespace, report: Report, work: Path, device: str) -> None:
        self.args, self.report, self.work, self.device = args, report, work, device
        self.triplets = read_triplets()
        texts = [row[column] for row in self.triplets for column in ("anchor", "positive", "negative")]
        from st_prune.prompt_format import instruction_prompt

        prompts = sorted({instruction_prompt(row["instruction"]) for row in self.triplets})
        self.bpe = train_bpe(texts + prompts * 100)  # the prompts (and the " →" closing them) become few tokens

    def encoder(self, folder: Path, recipe, seq_len: int, layers: int | None = None):
        """The model the recipe runner builds (``RunContext.encoder``), loaded straight onto the device."""
        from st_prune import encoder_from_llm
        from st_prune.prompt_format import instruction_prompt

        model_kwargs: dict[str, Any] = {}
        if self.device.startswith("cuda"):
            model_kwargs["device_map"] = self.device  # missing weights are created and initialised on the GPU
        if self.args.attn:
            model_kwargs["attn_implementation"] = self.args.attn
        return encoder_from_llm(
            str(folder),
            layers=layers,
            pooling=recipe.base.pooling,
            max_seq_length=seq_len,
            prompts={"query": instruction_prompt(recipe.query_instruction) or "", "document": ""},
            dtype="float32" if self.args.tiny else recipe.base.dtype,
            device=self.device,
            model_kwargs=model_kwargs,
        )

    def prepare(self, name: str, recipe, seq_len: int, rows_per_task: int):
        config = make_model_folder(name, self.work / name, self.bpe, self.args.tiny)
        if not self.args.tiny and recipe.base.layers != config["num_hidden_layers"]:
            raise RuntimeError(
                f"recipe {name} says {recipe.base.layers} layers, its config {config['num_hidden_layers']}"
            )
        return config, long_rows(self.triplets, seq_len, rows_per_task)

    def describe(self, name: str, model, config: dict[str, Any], data, seq_len: int) -> None:
        """The loaded model's facts; and a guard that its tokenizer (as transformers loads it for this model type)
        gives every training text its full length, so the timed shapes are the recipe's."""
        auto = model[0].auto_model
        shortest = min(
            len(model[0].tokenizer(data[column][0])["input_ids"]) for column in ("anchor", "positive", "negative")
        )
        if shortest < seq_len:
            raise RuntimeError(
                f"{type(model[0].tokenizer).__name__} gives a training text {shortest} tokens, fewer "
                f"than {seq_len}: the texts would not have the recipe's length"
            )
        self.report.arch(name).update(
            tokenizer=type(model[0].tokenizer).__name__,
            model_type=config["model_type"],
            layers=config["num_hidden_layers"],
            parameters=sum(parameter.numel() for parameter in model.parameters()),
            dtype=str(auto.dtype).replace("torch.", ""),
            attention=getattr(auto.config, "_attn_implementation", None),
        )

    # --- Meta-Llama-3-8B-Instruct: the recipe's path at the recipe's sizes ----------------------------------------
    def run_main(self) -> None:
        from st_prune import L3Prune, export_model
        from st_prune.l3prune.scan import scan
        from st_prune.pipeline.recipe import load_recipe

        args, report, name = self.args, self.report, MAIN
        recipe = load_recipe(name)
        seq_len = args.seq_len or recipe.training.max_seq_length or recipe.base.max_seq_length
        batch, scan_batch = args.batch or recipe.training.batch_size, args.scan_batch or recipe.scan.batch_size
        steps = max(args.large_steps, args.small_steps, args.cached_steps)
        config, data = self.prepare(name, recipe, seq_len, max(batch, scan_batch) * max(1, math.ceil(steps / 4)))
        total = config["num_hidden_layers"]
        texts = data["positive"][: args.infer_batch]
        row = report.arch(name)
        row.update(seq_len=seq_len, batch=batch, small=args.llama_small, large=args.llama_large)

        with report.stage(name, "load_full", layers=total):
            model = self.encoder(self.work / name, recipe, seq_len)
        self.describe(name, model, config, data, seq_len)
        with report.stage(name, "forward_full") as record:
            record.update(inference_tokens_per_s(model, texts, args.repeats, self.device))
        with report.stage(name, "scan", batch=scan_batch, batches=args.scan_batches) as record:
            # L3Prune.select is sample + scan; they are timed apart so that the ratio compares forward passes alone.
            selector = L3Prune(
                batch_size=scan_batch,
                num_batches=args.scan_batches,
                seed=recipe.scan.seed,
                scale=recipe.scan.scale,
                show_progress_bar=False,
            )
            start = time.perf_counter()
            batches = selector.sample(data)
            sample_s = time.perf_counter() - start
            plain = plain_forward_s(model, batches, self.device)
            start = time.perf_counter()
            result = scan(
                model,
                batches,
                scale=selector.scale,
                show_progress_bar=False,
                settings={"batch_size": scan_batch, "num_batches": len(batches), "seed": selector.seed},
            )
            sync(self.device)
            scan_s = time.perf_counter() - start
            record.update(
                sample_s=round(sample_s, 3),
                scan_s=round(scan_s, 3),
                plain_forward_s=round(plain, 3),
                scan_per_forward=round(scan_s / plain, 3),
                finite_curve=all(map(math.isfinite, result.losses)),
            )
        with report.stage(name, "prune_large", layers=args.llama_large) as record:
            result.prune(model, args.llama_large)
            record.update(inference_tokens_per_s(model, texts, args.repeats, self.device))
        if args.large_steps:
            with report.stage(name, "train_large", layers=args.llama_large, steps=args.large_steps) as record:
                record.update(
                    self.train(model, data, recipe, seq_len, batch, args.large_steps, args.llama_large, total)
                )
        del model, result
        release(self.device)

        with report.stage(name, "load_small", layers=args.llama_small) as record:
            model = self.encoder(self.work / name, recipe, seq_len, layers=args.llama_small)
            record.update(inference_tokens_per_s(model, texts, args.repeats, self.device))
        if args.small_steps:
            with report.stage(name, "train_small", layers=args.llama_small, steps=args.small_steps) as record:
                record.update(
                    self.train(model, data, recipe, seq_len, batch, args.small_steps, args.llama_small, total)
                )
        if args.cached_steps:
            with report.stage(
                name,
                "train_small_cached",
                layers=args.llama_small,
                steps=args.cached_steps,
                mini_batch=args.cached_mini_batch,
            ) as record:
                record.update(
                    self.train(
                        model,
                        data,
                        recipe,
                        seq_len,
                        batch,
                        args.cached_steps,
                        args.llama_small,
                        total,
                        cached_loss=True,
                        cached_mini_batch_size=args.cached_mini_batch,
                    )
                )
        with report.stage(name, "export_small") as record:
            folder = self.work / "exports" / f"{name}-small"
            export_model(model, folder)
            record.update(
                size_gb=folder_gb(folder), reload_min_cosine=cosine_to_reload(model, folder, texts[:8], self.device)
            )
        self.drop_export(folder)
        del model
        release(self.device)

    def train(self, model, data, recipe, seq_len: int, batch: int, steps: int, kept: int, total: int, **changes: Any):
        from st_prune.training.trainer import train_encoder

        timer = step_timer(self.device)
        config = training_config(recipe, seq_len, self.args.tiny, max_steps=steps, batch_size=batch, **changes)
        run = train_encoder(model, data, config, self.work / "train" / f"{time.monotonic_ns()}", callbacks=[timer])
        losses = [entry["loss"] for entry in run.loss_history]
        return {
            "batch": batch,
            "bf16": run.bf16,
            "gradient_checkpointing": bool(config.gradient_checkpointing),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            **step_figures(timer, batch * 3 * seq_len, kept, total),
        }

    # --- the other four: load, cut, a few steps, export -------------------------------------------------------------
    def run_other(self, name: str) -> None:
        from st_prune.model import architectures
        from st_prune.pipeline.recipe import load_recipe
        from st_prune.training.trainer import train_pruned

        args, report = self.args, self.report
        recipe = load_recipe(name)
        seq_len = args.seq_len or recipe.base.max_seq_length
        config, data = self.prepare(name, recipe, seq_len, args.other_batch * max(1, math.ceil(args.other_steps / 4)))
        total = config["num_hidden_layers"]
        kept = architectures.layers_to_keep(total, fraction=args.other_fraction)
        texts = data["positive"][: min(args.infer_batch, 16)]
        report.arch(name).update(seq_len=seq_len, batch=args.other_batch, small=kept)

        with report.stage(name, "load_full", layers=total):
            model = self.encoder(self.work / name, recipe, seq_len)
        self.describe(name, model, config, data, seq_len)
        with report.stage(name, "forward_full") as record:
            record.update(inference_tokens_per_s(model, texts, args.repeats, self.device))
        with report.stage(name, "cut_small", layers=kept) as record:
            model[0].cut(kept)
            record.update(inference_tokens_per_s(model, texts, args.repeats, self.device))
        folder = self.work / "exports" / f"{name}-small"
        with report.stage(name, "train_export_small", layers=kept, steps=args.other_steps) as record:
            timer = step_timer(self.device)
            settings = training_config(
                recipe, seq_len, args.tiny, max_steps=args.other_steps, batch_size=args.other_batch
            )
            train_pruned(model, data, settings, folder, callbacks=[timer])  # trains, merges the adapter, exports
            record.update(
                batch=args.other_batch,
                **step_figures(timer, args.other_batch * 3 * seq_len, kept, total),
                merge_export_s=round(time.perf_counter() - timer.train_end, 2),
                size_gb=folder_gb(folder),
            )
        with report.stage(name, "reload_small") as record:
            record.update(reload_min_cosine=cosine_to_reload(model, folder, texts[:8], self.device))
        self.drop_export(folder)
        del model
        release(self.device)

    def drop_export(self, folder: Path) -> None:
        if not self.args.keep_exports:  # 2-5 GB each: the GPU machine has 64 GiB of disk
            shutil.rmtree(folder, ignore_errors=True)


# =====================================================================================================================
# Markdown
# =====================================================================================================================
def markdown(data: dict[str, Any]) -> str:
    def cell(value: Any, unit: str = "") -> str:
        if value is None or value == "":
            return "–"
        if isinstance(value, float):
            value = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        return f"{value}{unit}"

    versions_text = ", ".join(f"{key} {value}" for key, value in data["versions"].items() if value)
    lines = [
        f"# st-prune GPU check: {data['mode']}",
        "",
        f"Device: {data['device']}. {versions_text}. Total {data['total_s']:.0f} s.",
        "",
        (
            "| architecture | type | layers kept / L | parameters | load s | tok/s full | tok/s cut | train batch | "
            "step s | step s ÷ (k/L) | train tok/s | train peak GiB | export GB | reload cosine | status |"
        ),
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, arch in data["architectures"].items():
        stages = arch["stages"]
        cut = stages.get("load_small") or stages.get("cut_small") or {}
        train = stages.get("train_small") or stages.get("train_export_small") or {}
        export = stages.get("export_small") or stages.get("train_export_small") or {}
        reload = stages.get("export_small") or stages.get("reload_small") or {}
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    cell(arch.get("model_type")),
                    f"{cell(arch.get('small'))} / {cell(arch.get('layers'))}",
                    cell(arch.get("parameters")),
                    cell(stages.get("load_full", {}).get("seconds")),
                    cell(stages.get("forward_full", {}).get("tokens_per_s")),
                    cell(cut.get("tokens_per_s")),
                    f"{cell(train.get('batch'))} × 3 × {cell(arch.get('seq_len'))}" if train else "–",
                    cell(train.get("step_s")),
                    cell(train.get("step_per_layer_ratio_s")),
                    cell(train.get("train_tokens_per_s")),
                    cell(train.get("peak_gib")),
                    cell(export.get("size_gb")),
                    cell(reload.get("reload_min_cosine")),
                    arch.get("status", "–"),
                ]
            )
            + " |"
        )
    main = data["architectures"].get(MAIN)
    if main:
        lines += [
            "",
            f"## {MAIN}: the recipe's path, stage by stage",
            "",
            "| stage | layers | seconds | GiB at start | peak GiB | figures |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for stage, record in main["stages"].items():
            figures = {
                key: value
                for key, value in record.items()
                if key not in ("layers", "seconds", "peak_gib", "start_gib") and not isinstance(value, (list, dict))
            }
            lines.append(
                f"| {stage} | {cell(record.get('layers'))} | {cell(record.get('seconds'))} | "
                f"{cell(record.get('start_gib'))} | {cell(record.get('peak_gib'))} | {', '.join(f'{k} {cell(v)}' for k, v in figures.items())} |"
            )
    lines += [
        "",
        (
            "Peak memory: torch.cuda.max_memory_allocated per stage on a GPU, the process's peak resident "
            "memory on CPU. Weights are random, of the published configs' shapes (bench/gpu_configs/)."
        ),
    ]
    return "\n".join(lines) + "\n"


# =====================================================================================================================
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not args.tiny and not device.startswith("cuda"):
        print("gpu_check: real shapes need a CUDA GPU (7-9B parameters); run with --tiny on CPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    if args.tiny:  # tiny matrices gain nothing from threads, and on a shared CPU each op's thread barrier costs ~40x
        torch.set_num_threads(1)
    report = Report(args, device)
    for problem in report.data["environment_problems"]:
        print(f"gpu_check: environment: {problem}", flush=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="st-prune-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = 0
    try:
        try:
            check = Check(args, report, work, device)
        except Exception as error:  # st-prune or a dependency does not even import: the JSON says why, then it raises
            report.data["status"] = f"failed before any model: {one_line(error)}"
            report.data["traceback"] = traceback.format_exc()[-4000:]
            report.write()
            raise
        for name in [arch for arch in ARCHITECTURES if arch in args.archs.split(",")]:
            row = report.arch(name)
            try:
                check.run_main() if name == MAIN else check.run_other(name)
                row["status"] = "ok"
            except BudgetSpent as error:
                row["status"] = f"skipped: {error}"
            except Exception as error:  # noqa: BLE001  (one base's failure must not cost the others their figures)
                failed += 1
                row["status"] = f"failed: {one_line(error)}"
                row["traceback"] = traceback.format_exc()[-4000:]
                traceback.print_exc()
            report.write()
            release(device)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    report.write()
    print(markdown(report.data))
    print(f"wrote {args.output / 'gpu_check.json'} and {args.output / 'gpu_check.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
