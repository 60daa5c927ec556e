"""Training with the paper's recipe on tiny models: it learns, only LoRA moves, the export is exact,
runs resume exactly, NaN stops cleanly, two processes share negatives, and bad input fails early."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from training_rows import FAST, INSTRUCTION, triplet_rows, write_jsonl
from transformers import TrainerCallback

from st_prune import encoder_from_llm, export_model
from st_prune.cli import main as cli_main
from st_prune.errors import StPruneError
from st_prune.paper import PAPER_LORA_TARGETS
from st_prune.training.trainer import (
    NonFiniteLossError,
    TrainingConfig,
    build_loss,
    build_trainer,
    resolve_lora_targets,
    train_pruned,
)


def triplets(count: int, instruction: str | None = None, seed: int = 0) -> Dataset:
    return Dataset.from_list(triplet_rows(count, instruction, seed))


def batch_loss(trainer, rows: list[dict[str, str]]) -> float:
    """The trainer's own loss on a fixed batch (eval mode: no dropout)."""
    trainer.model.eval()
    columns = ("anchor", "positive", "negative")
    batch = trainer.data_collator([{column: row[column] for column in columns} for row in rows])
    features, labels = trainer.collect_features(batch)
    with torch.no_grad():
        return float(trainer.loss(features, labels))


def lora_state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters() if "lora_" in name}


@pytest.fixture()
def llama(tiny_llm):
    return encoder_from_llm(str(tiny_llm("llama", layers=4)), layers=2, max_seq_length=64)


def test_training_learns_moves_only_lora_and_exports_exactly(llama, tmp_path):
    data = triplets(32, INSTRUCTION)
    trainer = build_trainer(llama, data, TrainingConfig(max_steps=8, **FAST), tmp_path / "work")
    base_before = {name: value.detach().clone() for name, value in llama.named_parameters() if "lora_" not in name}
    lora_before = lora_state(llama)
    fixed = triplet_rows(8, seed=0)
    loss_before = batch_loss(trainer, fixed)

    assert {name for name, p in llama.named_parameters() if p.requires_grad} == set(lora_before)
    trainer.train()
    assert trainer.state.global_step == 8
    timer = trainer.step_timer  # what bench/bench_training.py reports
    assert len(timer.step_seconds) == len(timer.step_cpu_seconds) == 8 and min(timer.step_seconds) > 0
    assert batch_loss(trainer, fixed) < 0.8 * loss_before
    for name, value in llama.named_parameters():
        if "lora_" in name:
            continue
        assert torch.equal(value, base_before[name]), f"base weight {name} changed"
    changed = [
        name
        for name, value in lora_state(llama).items()
        if "lora_B" in name and not torch.equal(value, lora_before[name])
    ]
    assert len(changed) == len([name for name in lora_before if "lora_B" in name])  # every adapter learned

    texts = ["3 red dog", "a lazy thing", "the quick fox number 7"]
    prompt = "Retrieve semantically similar text →"
    adapted = llama.encode(texts, prompt=prompt)  # adapter attached, not merged
    output = export_model(llama, tmp_path / "export")
    assert not (output / "adapter_config.json").exists()
    # Built-in module types only, so this is the plain sentence-transformers load a user gets (test_export.py
    # repeats it in a process where st_prune cannot be imported).
    assert all(
        entry["type"].startswith("sentence_transformers.models.")
        for entry in json.loads((output / "modules.json").read_text())
    )
    reloaded = SentenceTransformer(str(output)).encode(texts, prompt=prompt)
    assert np.abs(reloaded - adapted).max() <= 1e-5


def test_instructions_are_training_prompts_excluded_from_pooling_like_encode(llama, tmp_path):
    rows = triplet_rows(8, "Find the matching text") + triplet_rows(8, "Another task", seed=1)
    trainer = build_trainer(llama, Dataset.from_list(rows), TrainingConfig(max_steps=1, **FAST), tmp_path)
    prompts = trainer.training_data.prompts
    assert len(prompts) == 2 and all(set(prompt) == {"anchor"} for prompt in prompts.values())
    assert sorted("Find the matching text" in p["anchor"] for p in prompts.values()) == [False, True]

    llama.eval()
    for batch in list(trainer.get_train_dataloader())[:2]:
        prompt = prompts[batch["dataset_name"]]["anchor"]
        features, _ = trainer.collect_features(batch)
        assert features[0]["prompt_length"] > 0 and "prompt_length" not in features[1]
        texts = _decoded_anchor_texts(trainer, batch)
        with torch.no_grad():
            trained_path = llama(features[0])["sentence_embedding"]
        assert torch.allclose(trained_path, llama.encode(texts, prompt=prompt, convert_to_tensor=True), atol=1e-6)
        # ... and that path really leaves the instruction out: pooling it in gives another embedding.
        pooled_in = llama.encode([prompt + text for text in texts], convert_to_tensor=True)
        assert not torch.allclose(trained_path, pooled_in, atol=1e-3)


def _decoded_anchor_texts(trainer, batch) -> list[str]:
    """The anchors of a collated batch, found back in the training data by their token ids."""
    name = batch["dataset_name"]
    dataset = trainer.training_data.datasets[name]
    prompt = trainer.training_data.prompts[name]["anchor"]
    tokenizer = trainer.model[0].tokenizer
    lookup = {tuple(tokenizer(prompt + text)["input_ids"]): text for text in dataset["anchor"]}
    texts = []
    for ids, mask in zip(batch["anchor_input_ids"], batch["anchor_attention_mask"]):
        texts.append(lookup[tuple(ids[mask.bool()].tolist())])
    return texts


def test_cached_loss_equals_plain_loss(llama, tmp_path):
    trainer = build_trainer(llama, triplets(16, INSTRUCTION), TrainingConfig(max_steps=1, **FAST), tmp_path)
    llama.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    features, labels = trainer.collect_features(batch)
    cached = build_loss(llama, TrainingConfig(max_steps=1, cached_loss=True, cached_mini_batch_size=2, **FAST))
    with torch.no_grad():
        assert abs(float(trainer.loss(features, labels)) - float(cached(features, labels))) < 1e-5
    assert type(cached).__name__ == "CachedMultipleNegativesRankingLoss" and cached.scale == 50


def test_negatives_are_gathered_only_when_there_are_several_processes(llama, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert build_loss(llama, TrainingConfig()).gather_across_devices is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert build_loss(llama, TrainingConfig()).gather_across_devices is True
    assert build_loss(llama, TrainingConfig(cached_loss=True)).gather_across_devices is True
    assert build_loss(llama, TrainingConfig(gather_across_devices=False)).gather_across_devices is False


def test_lora_r_zero_trains_all_weights_and_gradient_checkpointing_runs(llama, tmp_path):
    config = TrainingConfig(max_steps=2, **{**FAST, "lora_r": 0}, gradient_checkpointing=True)
    before = {name: value.detach().clone() for name, value in llama.named_parameters()}
    trainer = build_trainer(llama, triplets(16), config, tmp_path)
    assert llama[0].auto_model.is_activation_checkpointing
    trainer.train()
    assert not any("lora_" in name for name, _ in llama.named_parameters())
    changed = [name for name, value in llama.named_parameters() if not torch.equal(value, before[name])]
    assert any("q_proj" in name for name in changed) and any("mlp" in name for name in changed)


def test_lora_targets_resolve_per_family(tiny_llm):
    phi3 = encoder_from_llm(str(tiny_llm("phi3", layers=2)))[0].auto_model
    assert resolve_lora_targets(phi3, PAPER_LORA_TARGETS) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    qwen3 = encoder_from_llm(str(tiny_llm("qwen3", layers=2)))[0].auto_model
    assert resolve_lora_targets(qwen3, PAPER_LORA_TARGETS) == list(PAPER_LORA_TARGETS)
    with pytest.raises(
        StPruneError, match=r"query_proj are not linear layers .* choose from: down_proj, gate_proj, k_proj"
    ):
        resolve_lora_targets(qwen3, ["q_proj", "query_proj"])


class StopAt(TrainerCallback):
    """Simulates a killed run: raises after the optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


class Record(TrainerCallback):
    def __init__(self) -> None:
        self.begin_step = None
        self.optimizer_steps = None
        self.steps: list[int] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if self.begin_step is None:
            self.begin_step = state.global_step
            self.optimizer_steps = sorted({int(s["step"]) for s in optimizer.state.values()}) if optimizer else None

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_interrupted_run_resumes_exactly_where_it_stopped(tiny_llm, tmp_path):
    folder = str(tiny_llm("llama", layers=4))
    data = triplets(32, INSTRUCTION)
    config = TrainingConfig(max_steps=4, **{**FAST, "save_steps": 2})

    straight = encoder_from_llm(folder, layers=2, max_seq_length=64)
    build_trainer(straight, data, config, tmp_path / "straight").train()

    work = tmp_path / "interrupted.work"
    killed = encoder_from_llm(folder, layers=2, max_seq_length=64)
    with pytest.raises(KeyboardInterrupt):
        build_trainer(killed, data, config, work, callbacks=[StopAt(3)]).train()
    assert sorted(path.name for path in work.iterdir()) == ["checkpoint-2"]

    record = Record()
    resumed = train_pruned(
        encoder_from_llm(folder, layers=2, max_seq_length=64),
        data,
        config,
        work_dir=work,
        resume=True,
        callbacks=[record],
        keep_checkpoints=True,
    )
    assert record.begin_step == 2 and record.steps == [3, 4]
    assert record.optimizer_steps == [2]  # Adam state came back with the checkpoint
    straight_merged = straight[0].model.merge_and_unload().state_dict()
    for name, value in resumed[0].model.state_dict().items():
        assert torch.allclose(value, straight_merged[name], atol=1e-6), name


class Poison(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))


def test_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(llama, tmp_path):
    work = tmp_path / "work"
    config = TrainingConfig(max_steps=6, **{**FAST, "save_steps": 2})
    with pytest.raises(
        NonFiniteLossError, match=r"loss became nan at step 4 .* last good checkpoint is .*checkpoint-2"
    ):
        train_pruned(llama, triplets(32, INSTRUCTION), config, work_dir=work, callbacks=[Poison(3)])
    assert sorted(path.name for path in work.iterdir()) == [".st-prune-files.json", "checkpoint-2"]  # + the record
    from safetensors.torch import load_file

    adapter = load_file(str(work / "checkpoint-2" / "adapter_model.safetensors"))
    assert all(torch.isfinite(value).all() for value in adapter.values())


class MustNotTrain(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        raise AssertionError("bad input must be refused before training starts")


def test_bad_input_fails_before_training(llama, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = TrainingConfig(max_steps=2, **FAST)
    never = [MustNotTrain()]
    with pytest.raises(StPruneError):  # no positive column
        train_pruned(llama, Dataset.from_dict({"anchor": ["a", "b"]}), config, callbacks=never)
    with pytest.raises(StPruneError):  # no rows
        train_pruned(llama, Dataset.from_dict({"anchor": [], "positive": []}), config, callbacks=never)
    with pytest.raises(
        StPruneError, match=r"batch_size=4 rows to fill a batch \(largest: 3\); lower the batch size to at most 3"
    ):
        train_pruned(llama, triplets(3), config, callbacks=never)
    with pytest.raises(StPruneError, match="LoRA target module.*wq are not linear layers.*choose from: down_proj"):
        train_pruned(llama, triplets(8), config.replace(lora_target_modules=("wq",)), callbacks=never)
    with pytest.raises(StPruneError, match="leaving no room for text within max_seq_length=8"):
        train_pruned(llama, triplets(8, INSTRUCTION), config.replace(max_seq_length=8), callbacks=never)
    assert list(scratch.iterdir()) == []  # failed runs leave no scratch checkpoint folders behind
    with pytest.raises(StPruneError, match="batch_size must be an integer of at least 2"):
        TrainingConfig(batch_size=1)
    not_a_checkpoint = tmp_path / "checkpoint-7"
    not_a_checkpoint.mkdir()
    with pytest.raises(StPruneError, match="is not an st-prune training checkpoint"):
        train_pruned(llama, triplets(8), config, work_dir=tmp_path, resume=not_a_checkpoint, callbacks=never)
    with pytest.raises(StPruneError, match="no checkpoint in .* to resume from"):
        train_pruned(llama, triplets(8), config, work_dir=tmp_path / "empty", resume=True, callbacks=never)


def test_cli_trains_exports_only_the_model_and_refuses_bad_input(tiny_llm, tmp_path, capsys):
    folder = str(tiny_llm("qwen3", layers=4))
    data = write_jsonl(tmp_path / "train.jsonl", triplet_rows(16, INSTRUCTION))
    output = tmp_path / "model"
    common = [folder, "--data", str(data), "--max-seq-length", "64", "--lora-r", "4", "--batch-size", "4"]
    assert (
        cli_main(
            [
                "train",
                *common,
                "--layers",
                "2",
                "--max-steps",
                "3",
                "--save-steps",
                "2",
                "--learning-rate",
                "1e-3",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    assert "trained 2/4 layers for 3 steps" in capsys.readouterr().out
    assert not (tmp_path / "model.work").exists()  # checkpoints are cleaned up after the export
    assert (output / "modules.json").is_file() and not list(output.glob("checkpoint-*"))
    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == 2
    assert SentenceTransformer(str(output)).encode(["hello there"]).shape == (1, 32)
    capsys.readouterr()

    scanned = tmp_path / "scanned"
    tasks = write_jsonl(tmp_path / "tasks.jsonl", [{**row, "task": "t"} for row in triplet_rows(16)])
    assert (
        cli_main(
            [
                "train",
                *common,
                "--data",
                str(tasks),
                "--instructions",
                '{"t": "Find the text"}',
                "--l3prune",
                "small",
                "--scan-batches",
                "2",
                "--max-steps",
                "2",
                "--output",
                str(scanned),
            ]
        )
        == 0
    )
    scan = json.loads((scanned / "scan.json").read_text())
    assert (scanned / "scan.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((scanned / "config.json").read_text())["num_hidden_layers"] == scan["small"] <= 2
    capsys.readouterr()

    # A run killed after its step-2 checkpoint continues from the command line with --resume.
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        config = TrainingConfig(max_steps=4, **{**FAST, "save_steps": 2})
        build_trainer(
            encoder_from_llm(folder, layers=2, max_seq_length=64),
            str(data),
            config,
            tmp_path / "resumed.work",
            callbacks=[StopAt(3)],
        ).train()
    assert (
        cli_main(
            [
                "train",
                *common,
                "--layers",
                "2",
                "--max-steps",
                "4",
                "--save-steps",
                "2",
                "--output",
                str(resumed),
                "--resume",
            ]
        )
        == 0
    )
    assert "trained 2/4 layers for 4 steps" in capsys.readouterr().out
    assert (resumed / "modules.json").is_file() and not (tmp_path / "resumed.work").exists()

    bad_runs = [
        ["--layers", "2", "--output", str(output)],  # not empty
        ["--layers", "9", "--output", str(tmp_path / "x")],
        ["--layers", "2", "--batch-size", "32", "--output", str(tmp_path / "x")],
        ["--layers", "2", "--lora-targets", "q,k", "--output", str(tmp_path / "x")],
        ["--layers", "2", "--resume", "--output", str(tmp_path / "x")],
        ["--layers", "2", "--resume", str(tmp_path), "--output", str(tmp_path / "x")],
        ["--layers", "2", "--instructions", "{oops", "--output", str(tmp_path / "x")],
    ]
    for bad in bad_runs:
        assert cli_main(["train", *common, *bad]) == 2, bad
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("st-prune train: error:"), error
    assert not (tmp_path / "x").exists()
