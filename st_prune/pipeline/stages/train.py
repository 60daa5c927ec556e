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

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_prune.pipeline.stage import Stage, digest
from st_prune.pipeline.stages.prune import PRUNE
from st_prune.util.staging import commit_staging, new_staging_dir

CHECKPOINTS = "checkpoints"
KEY_FILE = "key.json"
ADAPTER = "adapter"
RECORD = "train.json"


def prepare_checkpoints(work_dir: Path, key: str, log: Callable[[str], None] = print) -> None:
    """Claim ``work_dir/checkpoints`` for the stage key ``key`` (rank 0 only: it may delete).

    Checkpoints saved under another key (a changed learning rate, say) cannot be continued: they are deleted
    (they are this stage's own scratch), with a line saying so.
    """
    from st_prune.training.trainer import has_checkpoints
    from st_prune.util.files import read_json, write_json_atomic

    folder = work_dir / CHECKPOINTS
    key_file = folder / KEY_FILE
    if has_checkpoints(folder):
        earlier = (
            read_json(key_file, fix="delete it to train from the start").get("key") if key_file.is_file() else None
        )
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
    from st_prune.training.trainer import train_encoder
    from st_prune.util.distributed import world_size
    from st_prune.util.files import write_json_atomic
    from st_prune.util.machine import machine_description

    folder = work_dir / CHECKPOINTS
    if resume:
        step = Path(resume).name.rpartition("-")[2]  # checkpoint-N holds the state after step N
        log(f"       resuming from {Path(resume).name} (step {step} of {config.max_steps})")
    weights_dtype = str(model[0].auto_model.dtype).removeprefix("torch.")  # for the card's Precision row
    run = train_encoder(model, data, config, folder, prompts=prompts, resume=resume)
    # "processes": each one draws its own batch of ``batch_size`` triplets per step (DDP), the card's budget counts all
    record = {
        **run.to_dict(),
        "machine": machine_description(),
        "settings": settings,
        "layers": layers,
        "dtype": weights_dtype,
        "processes": world_size(),
        **(extra or {}),
    }
    record["resumed_from"] = Path(resume).name if resume else None  # the folder name only: no local path in records
    if not is_main:
        return record
    adapter, partial = work_dir / ADAPTER, work_dir / f"{ADAPTER}.partial"
    for old in (adapter, partial):  # this stage's own output, rebuilt whole (adapter.partial: left by older versions)
        if old.exists():
            shutil.rmtree(old)
    # Staged like every other output: a kill or a full disk during the save leaves no half adapter (the next save
    # removes a killed one's staging folder), and the files get the umask's modes, not the 0600 peft writes.
    staging = new_staging_dir(adapter)
    try:
        model[0].model.save_pretrained(str(staging))
        commit_staging(staging, adapter)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_json_atomic(work_dir / RECORD, record)
    return record


def discard_checkpoints(work_dir: Path) -> None:
    """Delete the stage's checkpoints once its marker is written (before it, a kill would lose the training)."""
    shutil.rmtree(work_dir / CHECKPOINTS, ignore_errors=True)


# Training fields that do not change the trained weights: how often a checkpoint is saved.
_TRAINING_EXCLUDED = ("save_steps",)


def _training_settings(recipe, variant) -> dict[str, Any]:
    return {
        key: value
        for key, value in recipe.training_for(variant).key_settings().items()
        if key not in _TRAINING_EXCLUDED
    }


def load_trained(ctx, variant):
    """The variant's pruned encoder with its trained LoRA adapter attached (not merged)."""
    from peft import PeftModel

    from st_prune.errors import StPruneError

    layers = ctx.folder.record(variant.name, PRUNE.record, stage="prune")["layers"]
    adapter = ctx.folder.work(variant.name) / ADAPTER
    if not adapter.is_dir():
        raise StPruneError(f"{adapter} is missing: run the train stage first (--only train)")
    model = ctx.encoder(layers, variant=variant)  # the same MLP channels the adapter was trained on
    module = model[0]
    module.model = PeftModel.from_pretrained(module.auto_model, str(adapter))
    return model


def distillation_data(ctx, teacher, spec, batch_size: int) -> tuple[Any, dict[str, Any]]:
    """The training data with the trained teacher's embeddings of every text (``st_prune.training.distillation``)."""
    from st_prune.data.training_data import prepare_training_data
    from st_prune.training.distillation import add_teacher_embeddings
    from st_prune.util.resources import release_memory

    start = time.perf_counter()
    model = load_trained(ctx, teacher)
    model.max_seq_length = spec.max_seq_length or ctx.recipe.base.max_seq_length  # the student's inputs
    source = ctx.training_source()
    data = prepare_training_data(source.data, batch_size, source.prompts, ctx.instruction_template())
    data = add_teacher_embeddings(model, data)
    seconds = round(time.perf_counter() - start, 1)
    texts = sum(len(dataset) * (len(dataset.column_names) - 1) for dataset in data.datasets.values())  # not label
    ctx.log(
        f"       teacher {teacher.name} ({ctx.layers_of(teacher)} layers) embedded {texts} "
        f"training texts in {seconds:.0f}s"
    )
    del model
    release_memory()
    distill = ctx.recipe.distill
    return data, {
        "teacher": teacher.name,
        "teacher_layers": ctx.layers_of(teacher),
        "weight": distill.weight,
        "distance": distill.distance,
        "teacher_seconds": seconds,
    }


def self_distillation_data(ctx, config) -> tuple[Any, dict[str, Any]]:
    """The training data with the uncut base's embeddings of every text (``st_prune.training.self_distill``), cached
    in ``work/teacher-embeddings`` for every variant (the teacher and texts are the same for all), and its cost."""
    from st_prune.training import self_distill
    from st_prune.util import distributed
    from st_prune.util.resources import release_memory

    teacher = ctx.encoder(None, config.sequence_length())  # the uncut base: full depth, full width
    layers = teacher[0].num_layers
    source = ctx.training_source()
    cache = ctx.folder.root / "work" / self_distill.CACHE_DIR
    # stale="rebuild": the cache is the run's own scratch (like checkpoints), and a changed key means changed settings.
    # Rank 0 embeds; under DDP the other ranks then read its cache (no two processes write it).
    options = {
        "identity": f"{ctx.source()} ({layers} layers)",
        "batch_size": config.batch_size,
        "prompts": source.prompts,
        "stale": "rebuild",
        "progress": distributed.is_main(),
    }
    if distributed.is_main():
        data, cost = self_distill.self_distillation_data(teacher, source.data, cache, **options)
    distributed.wait_for_everyone()
    if not distributed.is_main():
        data, cost = self_distill.self_distillation_data(teacher, source.data, cache, **options)
    how = "read from the cache" if cost.cached else f"embedded in {cost.seconds:.0f}s"
    ctx.log(f"       teacher: the uncut base ({layers} layers), {cost.texts} training texts {how}")
    del teacher
    release_memory()
    return data, {
        "teacher": "base",
        "teacher_layers": layers,
        "weight": config.effective_distill_weight or 1.0,
        "distance": config.distill_distance,
        "teacher_seconds": round(cost.seconds, 1),
        "teacher_texts": cost.texts,
        "self": True,
    }


class TrainStage(Stage):
    """Every rank trains (DDP); checkpoints every ``training.save_steps`` let a re-run continue inside the stage, and
    rank 0 alone writes the adapter, the record and the marker."""

    name = "train"
    record = RECORD

    def key(self, recipe, variant, layers, folder=None) -> str:
        training = _training_settings(recipe, variant)
        if recipe.recover is not None:  # only when set: recipes without recovery keep their keys
            training = {**training, "recover": recipe.recover}
        teacher = recipe.teacher_of(variant)
        if teacher is None:
            return digest("train", PRUNE.key(recipe, variant, layers), training)
        # A distilled student also depends on its teacher's training. The teacher is named by its spec, not its layer
        # count: its depth follows from the scan (in the scan key) and the spec, so the key stays a function of the
        # recipe.
        from st_prune.pipeline.stages.scan import SCAN

        distill = {key: value for key, value in dataclasses.asdict(recipe.distill).items() if key != "variants"}
        teacher_part = (dataclasses.asdict(teacher), _training_settings(recipe, teacher), SCAN.key(recipe))
        return digest("train", PRUNE.key(recipe, variant, layers), training, distill, teacher_part)

    def check_inputs(self, ctx, variant) -> None:
        ctx.folder.record(variant.name, PRUNE.record, stage="prune")

    def describe(self, ctx, variant, extra: str = "") -> str:
        extra += f", {ctx.recipe.training_for(variant).steps} steps"
        extra += f", lr {variant.learning_rate:g}" if variant.learning_rate is not None else ""
        extra += ", self-distilled from the uncut base" if ctx.recipe.recover == "distill" else ""
        return super().describe(ctx, variant, extra)

    def run(self, ctx, variant) -> dict[str, Any]:
        from st_prune.util import distributed

        layers = ctx.folder.record(variant.name, PRUNE.record, stage="prune")["layers"]
        work = ctx.folder.work(variant.name)
        if distributed.is_main():
            prepare_checkpoints(work, self.key(ctx.recipe, variant, layers), log=ctx.log)  # drops other settings'
        distributed.wait_for_everyone()  # ... before any rank picks the checkpoint to continue from
        resume = resume_point(work)
        spec = ctx.recipe.training_for(variant)
        source = ctx.training_source()  # the data `st-prune train` would read from the same path
        # None (the default) trains at the base's length, the encoder's own (TrainingConfig.sequence_length)
        config = spec.config(max_seq_length=spec.max_seq_length or ctx.recipe.base.max_seq_length)
        data, prompts = source.data, source.prompts
        teacher = ctx.recipe.teacher_of(variant)
        distillation = None
        if teacher is not None:
            data, distillation = distillation_data(ctx, teacher, spec, config.batch_size)
            prompts = None  # the prepared data carries its prompts
            config = config.replace(
                distill_weight=ctx.recipe.distill.weight, distill_distance=ctx.recipe.distill.distance
            )
        elif ctx.recipe.recover == "distill":
            data, distillation = self_distillation_data(ctx, config)
            prompts = None
            config = config.replace(recover="distill")
        record = train_variant(
            ctx.encoder(layers, spec.max_seq_length, variant),
            data,
            prompts,
            config,
            work,
            resume=resume,
            settings=spec.key_settings(),
            layers=layers,
            log=ctx.log,
            is_main=distributed.is_main(),
            extra={"distillation": distillation} if distillation else None,
        )
        ctx.folder.forget(ctx.folder.record_path(variant.name, RECORD))
        return {"steps": record["steps"], "train_loss": record["train_loss"]}

    def finish(self, ctx, variant, key) -> None:
        from st_prune.util import distributed

        distributed.wait_for_everyone()  # the adapter and marker are written before any rank moves on
        marker = ctx.folder.marker(self.name, variant.name)
        if distributed.is_main() and marker.is_file() and ctx.folder.read(marker).get("key") == key:
            discard_checkpoints(ctx.folder.work(variant.name))


TRAIN = TrainStage()
