"""Training a pruned LLM encoder with the paper's recipe, on sentence-transformers' own trainer.

Nothing here re-writes the training loop: ``build_trainer`` wires the paper's defaults
(``TrainingConfig``) into ``SentenceTransformerTrainer``, ``SentenceTransformerTrainingArguments`` and
``MultipleNegativesRankingLoss``; ``train_pruned`` is the one obvious call around it::

    from st_prune.training.trainer import TrainingConfig, train_pruned

    model = train_pruned("Qwen/Qwen2-7B-Instruct", "triplets.jsonl", TrainingConfig(), "qwen2-l3prune-large",
                         layers=21)

What the wiring does (Thennal D K et al., arXiv 2410.14578, section 4):

- **LoRA** r=16, alpha=32, dropout 0.05 on the q, k, v, o, gate, up and down projections, resolved
  against the model's real linear layers (Phi-3's fused ``qkv_proj``/``gate_up_proj`` stand in for the
  split names), attached with ``peft.get_peft_model`` on the inner transformers model (ST's
  ``add_adapter`` fails with peft 0.21) and merged before anything is saved for users.
- **Loss**: hard-negative InfoNCE on cosine similarity with scale 50, i.e.
  ``MultipleNegativesRankingLoss(scale=50)`` over (anchor, positive, negative) columns, with in-batch
  negatives gathered across processes under DDP (``gather_across_devices=True``); the GradCache variant
  ``CachedMultipleNegativesRankingLoss`` with ``cached_loss=True`` for big batches on small GPUs.
- **Instructions** sit on the anchor (query) side and are excluded from pooling exactly as at inference
  with ``model.encode(texts, prompt=...)``: rows are grouped by instruction into one dataset per
  instruction, each with its own ST training prompt (``prompts={dataset: {"anchor": prompt}}``). ST's
  collator then prepends the prompt through ``Transformer.preprocess``, which reports the prompt's token
  count as ``prompt_length``, and ``Pooling(include_prompt=False)`` drops those tokens, the same code path
  as ``encode(prompt=...)``. (ST pools with one ``prompt_length`` per batch, so per-row prompts inside one
  batch cannot be excluded; one instruction per batch is also how the E5 mix is trained.)
- **Batches**: ``BatchSamplers.NO_DUPLICATES`` (no text twice in a batch, so no false negatives), each
  batch from one dataset (``PROPORTIONAL`` multi-dataset sampling), incomplete batches dropped.
- lr 2e-4 with linear decay after 300 warm-up steps, batch 64, 1000 steps, max_seq_length 512, seed 42,
  gradient checkpointing and bf16 on GPUs that support it.

And what makes long runs safe: checkpoints every ``save_steps`` (LoRA adapter + optimizer, scheduler
and RNG state) that ``resume_from_checkpoint`` continues exactly; a non-finite loss stops training
*before* the update with ``NonFiniteLossError`` naming the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.training_args import (
    BatchSamplers,
    MultiDatasetBatchSamplers,
)
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from st_prune.data.training_data import Prompts, TrainingData, prepare_training_data
from st_prune.errors import StPruneError
from st_prune.prompt_format import instruction_template
from st_prune.training.config import TrainingConfig, automatic_bf16, automatic_gradient_checkpointing
from st_prune.util import distributed
from st_prune.util.distributed import world_size

logger = logging.getLogger(__name__)

# Fused projections that stand in for split ones (Phi-3: qkv_proj, gate_up_proj; Baichuan: W_pack; ...).
FUSED_LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
    "W_pack": ("q_proj", "k_proj", "v_proj"),
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
}

# Written into every checkpoint next to the trainer's files: what was trained, to refuse a mismatched resume.
CHECKPOINT_INFO_NAME = "st_prune_checkpoint.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
# Training seconds up to a checkpoint, so that a resumed run's card reports the whole training time.
CHECKPOINT_PROGRESS_NAME = "st_prune_progress.json"


class NonFiniteLossError(StPruneError):
    """The training loss became NaN or infinite; raised before the update, so the weights are still good."""


# =====================================================================================================
# Configuration: TrainingConfig (st_prune.training.config), resolved against this machine
# =====================================================================================================
def use_bf16(config: TrainingConfig) -> bool:
    supported = automatic_bf16()
    if config.bf16 is None:
        return supported
    if config.bf16 and not supported:
        raise StPruneError("bf16=True needs a CUDA GPU with bfloat16 support; leave bf16 unset (auto) on this machine")
    return config.bf16


def use_gradient_checkpointing(config: TrainingConfig) -> bool:
    return (
        automatic_gradient_checkpointing() if config.gradient_checkpointing is None else config.gradient_checkpointing
    )


# =====================================================================================================
# LoRA
# =====================================================================================================
def linear_module_names(auto_model: torch.nn.Module) -> list[str]:
    """Leaf names of the model's linear layers (``q_proj``, ``qkv_proj``, ...), sorted."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in auto_model.named_modules()
            if isinstance(module, torch.nn.Linear) and name
        }
    )


def resolve_lora_targets(auto_model: torch.nn.Module, wanted: Sequence[str]) -> list[str]:
    """Map requested projection names onto this model's linear layers (fused projections stand in for split ones).

    Raises ``StPruneError`` listing the linear layers that do exist when a name matches none of them.
    """
    available = linear_module_names(auto_model)
    resolved: list[str] = []
    missing: list[str] = []
    for name in wanted:
        if name in available:
            candidates = [name]
        else:
            candidates = [fused for fused, parts in FUSED_LORA_TARGETS.items() if name in parts and fused in available]
        if not candidates:
            missing.append(name)
        for candidate in candidates[:1]:
            if candidate not in resolved:
                resolved.append(candidate)
    if missing:
        model_type = getattr(getattr(auto_model, "config", None), "model_type", type(auto_model).__name__)
        raise StPruneError(
            f"LoRA target module(s) {', '.join(missing)} are not linear layers of this {model_type} model; "
            f"choose from: {', '.join(available)} (lora_target_modules / --lora-targets)"
        )
    return resolved


def check_lora_targets(model_name_or_path: str | os.PathLike, wanted: Sequence[str]) -> list[str]:
    """``resolve_lora_targets`` against a weightless (meta-device) copy of the model: fails before any loading."""
    from transformers import AutoModel

    from st_prune.model.truncated_llm import (
        _quiet_transformers,
        load_base_config,
        resolve_source,
    )

    config = load_base_config(resolve_source(model_name_or_path))
    with torch.device("meta"), _quiet_transformers():
        skeleton = AutoModel.from_config(config)
    return resolve_lora_targets(skeleton, wanted)


def is_peft_wrapped(model: SentenceTransformer) -> bool:
    return hasattr(model[0].model, "peft_config")


def attach_lora(model: SentenceTransformer, config: TrainingConfig) -> list[str]:
    """Wrap the first module's transformers model in a PEFT LoRA model, in place; returns the target names.

    Uses ``peft.get_peft_model`` on the inner model (``SentenceTransformer.add_adapter`` needs peft >= 0.22).
    A model that already carries an adapter keeps it (e.g. a second ``build_trainer`` on the same model).
    """
    from peft import LoraConfig, get_peft_model

    module = model[0]
    if is_peft_wrapped(model):
        return sorted(next(iter(module.model.peft_config.values())).target_modules)
    targets = resolve_lora_targets(module.auto_model, config.lora_target_modules)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    torch.manual_seed(config.seed)  # LoRA A matrices start random: same seed, same run
    module.model = get_peft_model(module.model, lora)
    return targets


def enable_gradient_checkpointing(model: SentenceTransformer) -> None:
    auto = model[0].auto_model
    auto.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(auto, "enable_input_require_grads"):
        auto.enable_input_require_grads()


# =====================================================================================================
# Data
# =====================================================================================================
# =====================================================================================================
# Loss and trainer
# =====================================================================================================
def build_loss(model: SentenceTransformer, config: TrainingConfig) -> torch.nn.Module:
    """Hard-negative InfoNCE with scale ``config.scale`` (MNRL; its GradCache variant with ``cached_loss``), plus
    ``distill_weight`` x the distance to the teacher's embeddings where that is above 0."""
    # Asked for in a single process, the gather only warns that there is nothing to gather.
    gather = config.gather_across_devices and world_size() > 1
    if config.cached_loss:
        return CachedMultipleNegativesRankingLoss(
            model, scale=config.scale, mini_batch_size=config.cached_mini_batch_size, gather_across_devices=gather
        )
    loss = MultipleNegativesRankingLoss(model, scale=config.scale, gather_across_devices=gather)
    if config.effective_distill_weight:
        from st_prune.training.distillation import DistilledContrastiveLoss

        return DistilledContrastiveLoss(
            loss, weight=config.effective_distill_weight, distance_metric=config.distill_distance
        )
    return loss


def training_arguments(
    config: TrainingConfig, output_dir: str | os.PathLike, prompts: dict[str, Any] | None = None
) -> SentenceTransformerTrainingArguments:
    """``SentenceTransformerTrainingArguments`` for ``config`` (checkpoints under ``output_dir``)."""
    arguments: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.effective_warmup_steps,
        "lr_scheduler_type": config.lr_scheduler_type,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "bf16": use_bf16(config),
        "prompts": prompts,
        "batch_sampler": BatchSamplers.NO_DUPLICATES,
        "multi_dataset_batch_sampler": MultiDatasetBatchSamplers.PROPORTIONAL,
        "dataloader_drop_last": True,  # every batch full: equal shapes for the cross-process gather
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "logging_steps": config.logging_steps,
        "logging_nan_inf_filter": False,  # a NaN must surface, not be averaged away
        "ddp_find_unused_parameters": False,
        "report_to": "none",
    }
    if world_size() > 1 and not torch.cuda.is_available():
        # Several CPU processes (torchrun on a machine without GPUs): accelerate runs DDP over gloo only
        # when told the processes are CPU ones; otherwise each would train alone.
        arguments["use_cpu"] = True
    arguments.update(config.training_arguments)
    return SentenceTransformerTrainingArguments(**arguments)


class PrunedLLMTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` with three additions for pruned, LoRA-adapted LLM encoders.

    - a training ``max_seq_length`` (passed to ST's collator as its ``max_length``), independent of the
      model's inference limit;
    - a non-finite loss raises ``NonFiniteLossError`` before the backward pass and update (agreed across
      processes), so the weights and the last checkpoint stay good;
    - checkpoints record what was trained, and resuming loads the LoRA adapter (or the full weights) into
      the model being trained instead of re-loading the base model the adapter config points at (which
      would be the unpruned base).
    """

    def __init__(self, *args: Any, max_seq_length: int | None = None, **kwargs: Any) -> None:
        self._training_max_seq_length = max_seq_length
        super().__init__(*args, **kwargs)

    def get_data_collator(self, model, args, processing_class):
        collator = super().get_data_collator(model=model, args=args, processing_class=processing_class)
        if self._training_max_seq_length is not None:
            collator.max_length = self._training_max_seq_length
        return collator

    # --- NaN guard ----------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        loss = result[0] if isinstance(result, tuple) else result
        if self.model.training:
            self._stop_if_not_finite(loss)
        return result

    def _stop_if_not_finite(self, loss: torch.Tensor) -> None:
        bad = (~torch.isfinite(loss.detach())).any().float()  # stays on the device: one sync, at .item() below
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)  # every process stops together
        if bad.item() == 0:
            return
        step = self.state.global_step + 1
        last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
        raise NonFiniteLossError(
            f"training loss became {loss.detach().float().item()} at step {step} and training stopped before the "
            f"update; {where}: lower the learning rate or check the data, then run again (--resume continues from "
            "the last checkpoint)"
        )

    # --- checkpoints --------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        existed = folder.exists()
        try:
            super()._save_checkpoint(model, trial)
        except BaseException:
            # A save cut short (a full disk, a file-size limit) is no resume point: drop the half checkpoint.
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            raise

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        info = checkpoint_info(self.model)
        Path(output_dir, CHECKPOINT_INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True))
        timer = getattr(self, "step_timer", None)
        if timer is not None:  # trainer_state.json keeps the loss history but not the time: a resume needs both
            progress: dict[str, float] = {"train_seconds": timer.train_seconds()}
            loss_sum = self._loss_sum_so_far()
            if loss_sum is not None:
                progress["loss_sum"] = loss_sum
            Path(output_dir, CHECKPOINT_PROGRESS_NAME).write_text(json.dumps(progress))

    def _loss_sum_so_far(self) -> float | None:
        """Sum of every step's loss up to now, earlier runs before a resume included: the trainer's own
        ``train_loss`` averages only the steps of its ``train()`` call, so a resumed run's mean needs the rest."""
        drained, pending = getattr(self, "_total_loss_scalar", None), getattr(self, "_tr_loss", None)
        timer = getattr(self, "step_timer", None)
        if drained is None or pending is None or timer is None or timer.earlier_loss_sum is None:
            return None
        return timer.earlier_loss_sum + drained + float(pending.detach().float().item())

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        load_checkpoint_weights(self.model, resume_from_checkpoint)


def checkpoint_info(model: SentenceTransformer) -> dict[str, Any]:
    """What a checkpoint holds, to refuse resuming it into a different model."""
    from st_prune.model import architectures

    auto = model[0].auto_model
    info: dict[str, Any] = {
        "kind": "lora" if is_peft_wrapped(model) else "full",
        "model_type": getattr(auto.config, "model_type", None),
        "num_layers": len(architectures.decoder_layers(auto)),
        "hidden_size": getattr(auto.config, "hidden_size", None),
    }
    if is_peft_wrapped(model):
        peft_config = next(iter(model[0].model.peft_config.values()))
        info["lora_r"] = peft_config.r
        info["lora_target_modules"] = sorted(peft_config.target_modules)
    return info


def check_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` if it is a training checkpoint folder written by ``PrunedLLMTrainer``; else a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise StPruneError(f"resume checkpoint {path} does not exist; pass a checkpoint-N folder or --resume alone")
    missing = [name for name in ("trainer_state.json", CHECKPOINT_INFO_NAME) if not (path / name).is_file()]
    if missing:
        raise StPruneError(
            f"{path} is not an st-prune training checkpoint (no {', '.join(missing)}); "
            f"pass a {PREFIX_CHECKPOINT_DIR}-N folder of the work directory"
        )
    return path


def load_checkpoint_weights(model: SentenceTransformer, checkpoint: str | os.PathLike) -> None:
    """Load a checkpoint's trained weights (LoRA adapter or full model) into ``model``, checking they fit."""
    from safetensors.torch import load_file

    checkpoint = check_checkpoint(checkpoint)
    saved = json.loads((checkpoint / CHECKPOINT_INFO_NAME).read_text())
    current = checkpoint_info(model)
    if saved != current:
        changed = ", ".join(
            f"{key}: {saved.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(saved) | set(current))
            if saved.get(key) != current.get(key)
        )
        raise StPruneError(
            f"checkpoint {checkpoint} was trained on a different model or LoRA setup ({changed}); "
            "resume with the same model, layers and LoRA settings, or start a new run without --resume"
        )
    module = model[0]
    if is_peft_wrapped(model):
        from peft import set_peft_model_state_dict

        state = load_file(str(checkpoint / ADAPTER_WEIGHTS_NAME), device="cpu")
        result = set_peft_model_state_dict(module.model, state)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing = [key for key in getattr(result, "missing_keys", []) or [] if "lora_" in key]
        if unexpected or missing:
            raise StPruneError(
                f"checkpoint {checkpoint} adapter does not fit this model ({(unexpected or missing)[0]} ...)"
            )
    else:
        state: dict[str, torch.Tensor] = {}
        for file in sorted(checkpoint.glob("model*.safetensors")):
            state.update(load_file(str(file), device="cpu"))
        module.auto_model.load_state_dict(state, strict=True)


def check_prompts_fit(model: SentenceTransformer, data: TrainingData, max_seq_length: int | None) -> None:
    """Refuse instruction prompts that leave no room for the text (they would embed as nothing)."""
    limit = max_seq_length or model.max_seq_length
    tokenizer = model[0].tokenizer
    if not limit or tokenizer is None:
        return
    for prompt in {prompt for prompts in data.prompts.values() for prompt in prompts.values()}:
        length = len(tokenizer(prompt)["input_ids"])
        if length >= limit:
            raise StPruneError(
                f"the instruction prompt {prompt!r} is {length} tokens, leaving no room for text within "
                f"max_seq_length={limit}; raise max_seq_length (--max-seq-length) or shorten the instruction"
            )


class _StepTimer(TrainerCallback):
    """Wall and process-CPU seconds of each optimizer step (``trainer.step_timer``), for benchmarks and logs."""

    def __init__(self) -> None:
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []
        self._start: tuple[float, float] | None = None
        self.earlier_seconds = 0.0  # training time of the run(s) a resumed run continues (from the checkpoint)
        self.earlier_loss_sum: float | None = 0.0  # their summed step losses (None: a checkpoint without the record)
        self._train_start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_start = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall seconds of training so far, the interrupted runs before a resume included."""
        running = time.perf_counter() - self._train_start if self._train_start is not None else 0.0
        return self.earlier_seconds + running

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.step_seconds.append(time.perf_counter() - self._start[0])
            self.step_cpu_seconds.append(time.process_time() - self._start[1])


def build_trainer(
    model: SentenceTransformer,
    data: Any,
    config: TrainingConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    prompts: Prompts = None,
    callbacks: Sequence[TrainerCallback] | None = None,
    evaluator: Any = None,
) -> PrunedLLMTrainer:
    """The paper's training, ready to ``.train()``: LoRA attached to ``model`` (in place), loss, arguments, data.

    Args:
        model: a SentenceTransformer whose first module is a ``TruncatedLLM`` (``encoder_from_llm``).
        data: triplets (see ``prepare_training_data``): a Dataset, DatasetDict, file path or E5-mix folder.
        config: ``TrainingConfig()`` (the paper's defaults) unless given.
        output_dir: where checkpoints go (the trainer's ``output_dir``); a temporary folder if None.
        prompts: trainer-style prompts for data without an ``instruction`` column (e.g. from ``load_e5_mix``).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        evaluator: an optional sentence-transformers evaluator run at ``eval_steps``.

    The trainer's ``step_timer.step_seconds`` / ``step_cpu_seconds`` list each step's wall and CPU time. Call
    ``st_prune.export_model(model, folder)`` after training (it merges the adapter).
    """
    config = config or TrainingConfig()
    config.validate()
    # Instructions in the model's own format: a cut of Qwen3-Embedding trains on "Instruct: ...\nQuery:" prompts.
    prepared = prepare_training_data(data, config.batch_size, prompts, instruction_template(model.prompts))
    check_prompts_fit(model, prepared, config.sequence_length())
    if config.effective_distill_weight:
        from st_prune.training.distillation import LABEL_COLUMN

        if any(LABEL_COLUMN not in dataset.column_names for dataset in prepared.datasets.values()):
            raise StPruneError(
                "distillation needs the teacher's embeddings in the data: build it with "
                "st_prune.training.distillation.add_teacher_embeddings(teacher, data), or train "
                "with train_pruned(..., config=TrainingConfig(recover='distill'))"
            )
    if config.lora_r:
        attach_lora(model, config)
    if use_gradient_checkpointing(config):
        enable_gradient_checkpointing(model)
    train_dataset, prompts = prepared.for_trainer()
    scratch_dir = None
    if output_dir is None:
        output_dir = scratch_dir = tempfile.mkdtemp(prefix="st-prune-train-")
    args = training_arguments(config, output_dir, prompts)
    timer = _StepTimer()
    trainer = PrunedLLMTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=build_loss(model, config),
        evaluator=evaluator,
        callbacks=[timer, *(callbacks or [])],
        max_seq_length=config.sequence_length(),
    )
    trainer.step_timer = timer
    trainer.training_data = prepared
    if scratch_dir is not None:
        weakref.finalize(trainer, shutil.rmtree, scratch_dir, ignore_errors=True)
    return trainer


# =====================================================================================================
# The one call
# =====================================================================================================
def work_dir_for(output_dir: str | os.PathLike) -> Path:
    """Checkpoints of a run that exports to ``output_dir`` live in the sibling ``<output_dir>.work``."""
    output_dir = Path(output_dir)
    return output_dir.parent / f"{output_dir.name}.work"


def has_checkpoints(work_dir: str | os.PathLike) -> bool:
    return Path(work_dir).is_dir() and get_last_checkpoint(str(work_dir)) is not None


def resolve_resume(resume: bool | str | os.PathLike | None, work_dir: str | os.PathLike) -> str | None:
    """The checkpoint to resume from: the last one in ``work_dir`` (``resume=True``) or the given folder."""
    if not resume:
        return None
    if resume is True:
        if not has_checkpoints(work_dir):
            raise StPruneError(f"no checkpoint in {work_dir} to resume from; drop --resume to start a new run")
        last, skipped = _newest_intact_checkpoint(work_dir)
        _log_skipped(last, skipped)
        if last is None:
            raise StPruneError(
                f"every checkpoint in {work_dir} is damaged ({skipped[0][1]} in {Path(skipped[0][0]).name}, ...); "
                "pass --overwrite (overwrite=True) to start over"
            )
        return str(check_checkpoint(last))
    checkpoint = check_checkpoint(resume)
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise StPruneError(f"checkpoint {resume} is damaged ({problem}); pass an intact checkpoint or --resume alone")
    return str(checkpoint)


def resumable_checkpoint(work_dir: str | os.PathLike) -> str | None:
    """The newest intact checkpoint in ``work_dir`` (damaged newer ones skipped with one warning), or None."""
    if not has_checkpoints(work_dir):
        return None
    last, skipped = _newest_intact_checkpoint(work_dir)
    _log_skipped(last, skipped)
    return last


def _log_skipped(last: str | None, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        # A kill during a save leaves a partial checkpoint-N; the one before it is whole and loses only N steps.
        logger.warning(
            "Skipping damaged checkpoint(s) %s (interrupted while being saved); %s",
            "; ".join(f"{Path(path).name}: {why}" for path, why in skipped),
            f"resuming from {Path(last).name}" if last else "none left to resume from",
        )


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why a checkpoint folder cannot be resumed from (a save cut short), or None when it is whole.

    The trainer writes the weights, then optimizer, scheduler and RNG state, and trainer_state.json last.
    """
    from st_prune.util.file_integrity import json_problem, safetensors_problem, torch_zip_problem

    path = Path(path)
    problem = json_problem(path / "trainer_state.json") or json_problem(path / CHECKPOINT_INFO_NAME)
    if problem:
        return problem
    kind = json.loads((path / CHECKPOINT_INFO_NAME).read_text()).get("kind")
    weights = [path / ADAPTER_WEIGHTS_NAME] if kind == "lora" else sorted(path.glob("model*.safetensors"))
    if not weights:
        return "no model weights"
    for file in weights:
        problem = safetensors_problem(file)
        if problem:
            return problem
    for name in ("optimizer.pt", "scheduler.pt"):
        if (path / name).exists() and (problem := torch_zip_problem(path / name)):
            return problem
    return None


def _newest_intact_checkpoint(work_dir: str | os.PathLike) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest whole checkpoint-N in ``work_dir`` and the newer damaged ones skipped, (path, why)."""
    from transformers.trainer_utils import sort_checkpoints

    skipped: list[tuple[str, str]] = []
    for path in reversed(sort_checkpoints(str(work_dir))):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def last_intact_checkpoint(work_dir: str | os.PathLike) -> str | None:
    """The checkpoint ``--resume`` would continue from, or None."""
    return _newest_intact_checkpoint(work_dir)[0] if has_checkpoints(work_dir) else None


# --------------------------------------------------------------------------------------- the work folder
# ``<output>.work`` holds what st-prune train writes beside the export (checkpoints, run.json, the scan): it is used
# only when absent, empty or st-prune's own, and what st-prune wrote there is recorded (``st_prune.util.ownership``) so
# that cleaning it up removes exactly that. Work folders from before the record are recognised by what only
# st-prune writes: checkpoint-N folders holding CHECKPOINT_INFO_NAME, and run.json / scan.json of st-prune train.
WORK_WRITER = "train"


def _work_legacy(work_dir: Path):
    """Proof that ``work_dir``'s unrecorded file was written by st-prune train (an older one, or killed before its
    checkpoint was recorded)."""

    def written_by_train(path: Path) -> bool:
        parts = path.relative_to(work_dir).parts
        if len(parts) > 1 and parts[0].startswith(f"{PREFIX_CHECKPOINT_DIR}-"):
            return (work_dir / parts[0] / CHECKPOINT_INFO_NAME).is_file()
        if parts == ("run.json",):
            return _json_has(path, "model", "kept_layers")
        if parts == ("scan.json",):
            return _json_has(path, "losses") and _json_has(work_dir / "run.json", "model", "kept_layers")
        if parts == ("scan.png",):
            return (work_dir / "scan.json").is_file() and _json_has(work_dir / "run.json", "model", "kept_layers")
        return False

    return written_by_train


def _json_has(path: Path, *keys: str) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in keys)


def check_work_dir(work_dir: Path) -> None:
    """``work_dir`` is absent, empty or st-prune's: a folder of the user's there is never written into or removed."""
    from st_prune.util import ownership

    if not os.path.lexists(work_dir):
        return
    fix = "move it away or choose another --output"
    if work_dir.is_symlink() or not work_dir.is_dir():
        raise StPruneError(
            f"{work_dir} exists and is not a folder st-prune made; st-prune train keeps its checkpoints "
            f"in that folder beside --output: {fix}"
        )
    theirs = ownership.foreign(work_dir, legacy=_work_legacy(work_dir))
    ours = ownership.has_record(work_dir) or theirs != ownership.foreign(work_dir)  # recorded, or proven st-prune's
    if theirs and not ours:
        raise StPruneError(
            f"{work_dir} holds files st-prune did not write ({', '.join(theirs[:3])}); st-prune train "
            f"keeps its checkpoints in that folder beside --output and removes it when done: {fix}"
        )


def claim_work_dir(work_dir: Path) -> None:
    """Create ``work_dir`` (recorded as st-prune's) or take over an existing one of st-prune's: its unrecorded files
    that st-prune train wrote (``_work_legacy``) are recorded, so that the clean-up removes them too."""
    from st_prune.util import ownership

    recorded = ownership.has_record(work_dir)
    ownership.make_folder(work_dir, by=WORK_WRITER)
    files = [path.relative_to(work_dir).as_posix() for path in work_dir.rglob("*") if path.is_file()]
    adopted = ownership.adopt(work_dir, files, by=WORK_WRITER, legacy=_work_legacy(work_dir), digest=False)
    if adopted and not recorded and not ownership.foreign(work_dir):
        ownership.record(work_dir, [], by=WORK_WRITER, dirs=["."])  # an older st-prune's work folder, all its own


class _RecordCheckpoints(TrainerCallback):
    """Record each checkpoint the trainer saves in the work folder as st-prune's (no sha256: they are large)."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def on_save(self, args, state, control, **kwargs):
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and (self.work_dir / name).is_dir():
            from st_prune.util import ownership

            ownership.record_tree(self.work_dir, name, by=WORK_WRITER, digest=False)


def remove_work_dir(work_dir: Path, *, checkpoints_only: bool = False) -> list[str]:
    """Remove what st-prune wrote in ``work_dir`` (only the checkpoints with ``checkpoints_only``), and the folder
    once empty; what is left there is the user's and stays."""
    from st_prune.util import ownership

    if checkpoints_only:
        return ownership.remove_owned(work_dir, under=[p.name for p in work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")])
    left = ownership.remove_owned(work_dir, root=True)
    if left:
        logger.warning("Kept %s: it holds files st-prune did not write (%s)", work_dir, ", ".join(left[:3]))
    return left


def check_run_folders(
    output_dir: str | os.PathLike | None,
    work_dir: Path,
    resume: bool | str | os.PathLike | None,
    overwrite: bool,
    *,
    derived_work_dir: bool = True,
) -> str | None:
    """Fail fast on the export folder and the checkpoints in ``work_dir``; the checkpoint to resume from, if any.

    ``derived_work_dir``: ``work_dir`` is ``<output_dir>.work``, chosen by st-prune, not by the caller: a folder of the
    user's there is refused (a work folder the caller names is theirs to give; only st-prune's files in it are
    ever removed either way)."""
    from st_prune.model.export import prepare_output_dir

    if output_dir is not None:
        prepare_output_dir(output_dir, overwrite)
    if derived_work_dir:
        check_work_dir(Path(work_dir))
    checkpoint = resolve_resume(resume, work_dir)
    if checkpoint is None and has_checkpoints(work_dir) and not overwrite:
        raise StPruneError(
            f"{work_dir} holds checkpoints of an earlier run; pass --resume (resume=True) to continue it, "
            "or --overwrite (overwrite=True) to start over"
        )
    return checkpoint


def train_pruned(
    model_or_path: SentenceTransformer | str | os.PathLike,
    data: Any,
    config: TrainingConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    prompts: Prompts = None,
    layers: int | None = None,
    fraction: float | None = None,
    pooling: str | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    keep_checkpoints: bool = False,
    callbacks: Sequence[TrainerCallback] | None = None,
    extra_files: dict[str, str | bytes] | None = None,
    teacher: SentenceTransformer | None = None,
) -> SentenceTransformer:
    """Train a pruned LLM encoder with the paper's recipe and return it with the LoRA adapter merged.

    Loads the model, applies the folder policy (``resume``, ``overwrite``), trains with ``train_encoder`` (the
    training ``st-prune run`` uses too), merges and exports.

    Args:
        model_or_path: a SentenceTransformer from ``encoder_from_llm``, or a Hub id / folder / ``.gguf`` file
            that is loaded with ``encoder_from_llm(layers=..., fraction=..., pooling=...)``.
        data: triplets: a ``datasets.Dataset``/``DatasetDict``, a JSONL/CSV/Parquet path, or an E5-mix folder
            (see ``prepare_training_data``); an ``instruction`` column becomes the anchor's prompt.
        config: ``TrainingConfig()`` (the paper's defaults) unless given.
        prompts: trainer-style prompts for data without an ``instruction`` column.
        output_dir: where the merged, vanilla-loadable model is exported (``st_prune.export_model``); None
            exports nothing. Checkpoints go to ``work_dir``, by default ``<output_dir>.work`` (a temporary
            folder without ``output_dir``); the export folder holds only the export.
        resume: ``True`` continues from the last checkpoint in ``work_dir``; a path continues from that
            checkpoint. Step count, optimizer, scheduler, RNG state and the adapter all continue.
        overwrite: replace a non-empty ``output_dir`` and start over in a ``work_dir`` holding checkpoints.
        keep_checkpoints: keep ``work_dir`` after a successful export (by default, what st-prune wrote there is
            deleted, and the folder once empty; a ``work_dir`` of the user's is refused before any work).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        extra_files: more files for the export folder (name -> content), e.g. the L3Prune scan.
        teacher: with ``config.recover="distill"``, the uncut model whose embeddings the cut learns (default: the
            full-depth ``model_or_path`` when that is a path). Its embeddings of ``data`` are cached in
            ``work_dir/teacher-embeddings`` (``st_prune.training.self_distill``); ``data`` may then be unlabelled text
            (a ``.txt`` file, a JSONL file with a ``text`` column, a list of strings). The teacher's cost is
            ``model.st_prune_teacher_cost`` afterwards.

    Raises:
        StPruneError: bad input, found before training starts; ``NonFiniteLossError`` if the loss diverges.
    """
    from st_prune.model.export import export_model, merge_adapters
    from st_prune.model.truncated_llm import encoder_from_llm

    config = config or TrainingConfig()
    config.validate()
    temporary_work = work_dir is None and output_dir is None
    derived = work_dir is None and output_dir is not None
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix="st-prune-train-") if temporary_work else work_dir_for(output_dir)
    work_dir = Path(work_dir)
    checkpoint = check_run_folders(output_dir, work_dir, resume, overwrite, derived_work_dir=derived)
    if not temporary_work and distributed.is_main():
        claim_work_dir(work_dir)
        callbacks = [_RecordCheckpoints(work_dir), *(callbacks or [])]
    if checkpoint is None and has_checkpoints(work_dir):
        if distributed.is_main():  # --overwrite: start over (st-prune's checkpoints only)
            remove_work_dir(work_dir, checkpoints_only=True)

    if isinstance(model_or_path, SentenceTransformer):
        if layers is not None or fraction is not None:
            model_or_path[0].cut(_layers_to_keep(model_or_path, layers, fraction))
        model = model_or_path
    else:
        model = encoder_from_llm(
            str(model_or_path),
            layers=layers,
            fraction=fraction,
            pooling=pooling,
            max_seq_length=config.sequence_length(),
        )

    cost = None
    if config.recover == "distill" and not _carries_teacher_embeddings(data):
        data, cost = _self_distillation(model_or_path, model, teacher, data, config, work_dir, prompts, pooling)
        prompts = None  # the prepared data carries its prompts
        if (
            not temporary_work and distributed.is_main()
        ):  # st-prune's own files: the clean-up after the export removes them
            from st_prune.training.self_distill import CACHE_DIR
            from st_prune.util import ownership

            ownership.record_tree(work_dir, CACHE_DIR, by=WORK_WRITER, digest=False)
    try:
        train_encoder(model, data, config, work_dir, prompts=prompts, resume=checkpoint, callbacks=callbacks)
        model.st_prune_teacher_cost = cost.to_dict() if cost is not None else None
        merge_adapters(model)
        if output_dir is not None and distributed.is_main():
            export_model(model, output_dir, overwrite=overwrite, extra_files=extra_files)
            if not keep_checkpoints:
                remove_work_dir(work_dir)  # what st-prune wrote there, and nothing else
    finally:
        # Checkpoints of a run without an export folder are only scratch: never leave them behind.
        if temporary_work and distributed.is_main():
            shutil.rmtree(work_dir, ignore_errors=True)
    return model


def _self_distillation(model_or_path, model, teacher, data, config, work_dir, prompts, pooling):
    """``data`` with the uncut teacher's embeddings (cached in ``work_dir``) and the teacher's cost."""
    from st_prune.model.truncated_llm import encoder_from_llm
    from st_prune.training.self_distill import CACHE_DIR, self_distillation_data
    from st_prune.util.resources import release_memory

    if teacher is None:
        if isinstance(model_or_path, SentenceTransformer):
            raise StPruneError(
                "recover='distill' on a model object needs its uncut teacher: pass teacher=the "
                "full-depth model (encoder_from_llm(path))"
            )
        teacher = encoder_from_llm(str(model_or_path), pooling=pooling, max_seq_length=config.sequence_length())
    teacher.max_seq_length = model.max_seq_length  # the teacher embeds exactly what the cut will see
    identity = f"{teacher_identity(model_or_path, teacher)}"
    data, cost = self_distillation_data(
        teacher,
        data,
        work_dir / CACHE_DIR,
        identity=identity,
        batch_size=config.batch_size,
        prompts=prompts,
        progress=distributed.is_main(),
    )
    del teacher
    release_memory()
    return data, cost


def _carries_teacher_embeddings(data: Any) -> bool:
    """True for training data whose every dataset already has the teacher's embeddings (``st-prune train`` made them)."""
    from st_prune.training.distillation import LABEL_COLUMN

    return isinstance(data, TrainingData) and all(LABEL_COLUMN in d.column_names for d in data.datasets.values())


def teacher_identity(reference: Any, teacher: SentenceTransformer) -> str:
    """The teacher as the cache key names it: its model reference and depth."""
    if isinstance(reference, SentenceTransformer):
        reference = getattr(reference[0], "name_or_path", None) or type(reference[0]).__name__
    module = teacher[0]
    layers = getattr(module, "num_layers", None)
    return f"{reference} ({layers} layers)" if layers is not None else str(reference)


@dataclass
class TrainingRun:
    """What ``train_encoder`` did, counted over the whole training: a resumed run includes the run(s) it continues.

    Attributes:
        steps: optimizer steps in all.
        seconds: wall seconds of training in all (each interrupted run up to its last checkpoint, plus this one).
        train_loss: mean loss over all steps (the trainer's own ``train_loss`` covers only its last ``train()``).
        loss_history: ``{"step", "loss"}`` of every logged step, the runs before a resume included.
        resumed_from: the checkpoint this run continued, or None; ``resumed_step`` its step (0 for a fresh run).
    """

    steps: int
    seconds: float
    train_loss: float
    loss_history: list[dict[str, float]]
    resumed_from: str | None
    resumed_step: int
    lora_target_modules: list[str]
    bf16: bool
    datasets: int
    triplets: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_encoder(
    model: SentenceTransformer,
    data: Any,
    config: TrainingConfig,
    work_dir: str | os.PathLike,
    *,
    prompts: Prompts = None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> TrainingRun:
    """Train ``model`` in place (LoRA left attached) with checkpoints in ``work_dir``; the core of ``train_pruned``
    and of ``st-prune run``'s train stage, so both get the same checkpoints, resume, NaN guard and ranks.

    ``resume`` is a checkpoint folder (``resolve_resume`` / ``last_intact_checkpoint`` find one): the adapter,
    optimizer, scheduler, step, RNG state and data position continue from it. Choosing whether to resume, and
    cleaning the folders, is the caller's policy; this only trains.
    """
    config.validate()
    trainer = build_trainer(model, data, config, work_dir, prompts=prompts, callbacks=callbacks)
    checkpoint = str(resume) if resume else None
    start_step = _checkpoint_step(checkpoint)
    earlier = _checkpoint_progress(checkpoint)
    trainer.step_timer.earlier_seconds = float(earlier.get("train_seconds", 0.0))
    trainer.step_timer.earlier_loss_sum = earlier.get("loss_sum", None if checkpoint else 0.0)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    if checkpoint:
        _carry_resumed_history(model, trainer)
    steps = int(trainer.state.global_step)
    if steps <= start_step < config.max_steps:
        raise StPruneError(
            f"no training batch could be built (batch_size={config.batch_size} distinct texts per batch); "
            "lower the batch size or remove duplicate texts"
        )
    this_run = output.training_loss * (steps - start_step)
    earlier_sum = trainer.step_timer.earlier_loss_sum
    # A checkpoint from before the loss sum was recorded: the mean of this run's steps is the best left.
    train_loss = (earlier_sum + this_run) / steps if earlier_sum is not None and steps else output.training_loss
    history: dict[int, float] = {}
    for entry in trainer.state.log_history:  # restored from the checkpoint's trainer_state.json, then extended
        if "loss" in entry and "step" in entry:
            history[int(entry["step"])] = round(float(entry["loss"]), 4)
    module = model[0]
    targets = sorted(next(iter(module.model.peft_config.values())).target_modules) if is_peft_wrapped(model) else []
    return TrainingRun(
        steps=steps,
        seconds=round(trainer.step_timer.train_seconds(), 1),
        train_loss=round(float(train_loss), 4),
        loss_history=[{"step": step, "loss": loss} for step, loss in sorted(history.items())],
        resumed_from=checkpoint,
        resumed_step=start_step,
        lora_target_modules=targets,
        bf16=use_bf16(config),
        datasets=len(trainer.training_data.datasets),
        triplets=trainer.training_data.num_rows,
    )


def _layers_to_keep(model: SentenceTransformer, layers: int | None, fraction: float | None) -> int:
    from st_prune.model import architectures

    return architectures.layers_to_keep(model[0].num_layers, layers, fraction)


def _checkpoint_progress(checkpoint: str | None) -> dict[str, float]:
    """Training seconds and summed step losses before ``checkpoint`` ({} for a fresh run or a checkpoint saved
    without the record)."""
    path = Path(checkpoint, CHECKPOINT_PROGRESS_NAME) if checkpoint else None
    if path is None or not path.is_file():
        return {}
    try:
        progress = json.loads(path.read_text())
        return {key: float(progress[key]) for key in ("train_seconds", "loss_sum") if key in progress}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _carry_resumed_history(model: SentenceTransformer, trainer: PrunedLLMTrainer) -> None:
    """ST's model-card callback saw only this process; give the card the time and loss rows from before the resume.

    The trainer restored the earlier loss log from the checkpoint's trainer_state.json (``state.log_history``).
    """
    card = model.model_card_data
    if getattr(card, "_training_start_time", None) is not None:
        card._training_start_time -= trainer.step_timer.earlier_seconds
    logs = getattr(card, "training_logs", None)
    if logs is None:
        return
    seen = {row.get("Step") for row in logs}
    earlier = [
        {"Epoch": entry.get("epoch"), "Step": entry["step"], "Training Loss": entry["loss"]}
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry and entry["step"] not in seen
    ]
    logs[:0] = earlier
    logs.sort(key=lambda row: row.get("Step") or 0)


def _checkpoint_step(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    state = json.loads(Path(checkpoint, "trainer_state.json").read_text())
    return int(state.get("global_step", 0))
