"""The train stage: LoRA-train a pruned encoder with ``st_prune.training.trainer.train_encoder`` (the training ``st-prune
train`` runs), checkpointing as it goes so that a run killed mid-training resumes inside the stage.

Files, in ``work/<variant>/``:

- ``checkpoints/checkpoint-N/`` every ``save_steps`` steps (adapter, optimizer, scheduler, RNG state, step), and
  ``checkpoints/key.json``: the stage key they were trained under. A re-run with the same key continues from the
  newest intact checkpoint (a checkpoint cut short by a kill during its save is skipped for the one before, with one
  log line); checkpoints of other settings are discarded.
- ``adapter/``: the trained LoRA adapter (small: the export stage merges it into the pruned base).
- ``train.json``: the record (settings, steps, time and loss history over the whole training, resumes included).

Under several processes (``torchrun``), every rank trains; rank 0 alone writes the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
KEY_FILE = "key.json"
ADAPTER = "adapter"
RECORD = "train.json"


def prepare_checkpoints(work_dir: Path, key: str, log: Callable[[str], None] = print) -> None:
    """Claim ``work_dir/checkpoints`` for the stage key ``key`` (rank 0 only: it may delete).

    Checkpoints saved under another key (a changed learning rate, say) cannot be continued: they are deleted
    (they are this stage's own scratch), with a line saying so.
    """
    from st_prune.util.files import read_json, write_json_atomic
    from st_prune.training.trainer import has_checkpoints

    folder = work_dir / CHECKPOINTS
    key_file = folder / KEY_FILE
    if has_checkpoints(folder):
        earlier = read_json(key_file, fix="delete it to train from the start").get("key") if key_file.is_file() else None
        if earlier != key:
            log(f"       discarding {folder}: its checkpoints were trained with other settings")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(key_file, {"key": key})


def resume_point(work_dir: Path) -> str | None:
    """The checkpoint the stage continues from (after ``prepare_checkpoints``): the newest intact one, a newer one
    damaged by a kill during its save skipped with one warning; None to start afresh."""
    from st_prune.training.trainer import resumable_checkpoint

    return resumable_checkpoint(work_dir / CHECKPOINTS)


def train_variant(
    model: Any,
    data: Any,
    prompts: Any,
    config: Any,
    work_dir: Path,
    *,
    resume: str | None,
    settings: dict[str, Any],
    layers: int,
    log: Callable[[str], None] = print,
    is_main: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a pruned encoder, trained in place) on ``data``/``prompts`` with ``config`` (a
    ``TrainingConfig``), continuing from ``resume`` (``resume_point``); saves the adapter and returns the record.

    ``settings`` are the recipe's training settings as written to the record (the card reads them); ``extra``
    adds entries to the record (the distillation's teacher and cost).
    """
    from st_prune.util.distributed import world_size
    from st_prune.util.files import write_json_atomic
    from st_prune.util.machine import machine_description
    from st_prune.training.trainer import train_encoder

    folder = work_dir / CHECKPOINTS
    if resume:
        step = Path(resume).name.rpartition("-")[2]  # checkpoint-N holds the state after step N
        log(f"       resuming from {Path(resume).name} (step {step} of {config.max_steps})")
    weights_dtype = str(model[0].auto_model.dtype).removeprefix("torch.")  # for the card's Precision row
    run = train_encoder(model, data, config, folder, prompts=prompts, resume=resume)
    # "processes": each one draws its own batch of ``batch_size`` triplets per step (DDP), the card's budget counts all
    record = {**run.to_dict(), "machine": machine_description(), "settings": settings, "layers": layers,
              "dtype": weights_dtype, "processes": world_size(), **(extra or {})}
    record["resumed_from"] = Path(resume).name if resume else None  # the folder name only: no local path in records
    if not is_main:
        return record
    adapter, partial = work_dir / ADAPTER, work_dir / f"{ADAPTER}.partial"
    for old in (adapter, partial):  # this stage's own output, rebuilt whole
        if old.exists():
            shutil.rmtree(old)
    model[0].model.save_pretrained(str(partial))
    partial.rename(adapter)  # a kill during the save leaves adapter.partial, never a half adapter
    write_json_atomic(work_dir / RECORD, record)
    return record


def discard_checkpoints(work_dir: Path) -> None:
    """Delete the stage's checkpoints once its marker is written (before it, a kill would lose the training)."""
    shutil.rmtree(work_dir / CHECKPOINTS, ignore_errors=True)
