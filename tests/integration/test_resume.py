"""Stopping and resuming `st-prune train` (issue 15): Ctrl-C says how to go on, a checkpoint damaged by a kill
during its save is skipped for the one before it, and the resumed model's card covers the whole training."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest
from stop_at import StopAt

from st_prune import cli
from st_prune.model.truncated_llm import encoder_from_llm
from st_prune.training import trainer as training
from st_prune.training.trainer import TrainingConfig, build_trainer, train_pruned

WORDS = [
    "cat",
    "dog",
    "fox",
    "bank",
    "money",
    "music",
    "guitar",
    "field",
    "sun",
    "road",
    "debian",
    "package",
    "river",
    "piano",
    "train",
    "cloud",
]
FAST = dict(
    batch_size=4,
    learning_rate=1e-3,
    warmup_steps=0,
    lora_r=4,
    lora_alpha=8,
    max_seq_length=32,
    save_steps=2,
    logging_steps=1,
)


@pytest.fixture()
def data(tmp_path) -> Path:
    path = tmp_path / "triplets.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "anchor": f"{i} the {WORDS[i]}",
                    "positive": f"a {WORDS[i]} number {i}",
                    "negative": f"some {WORDS[(i + 5) % 16]} {i + 100}",
                }
            )
            + "\n"
            for i in range(16)
        )
    )
    return path


@pytest.fixture()
def model_dir(tiny_llm) -> str:
    return str(tiny_llm("llama", layers=4))


def interrupted_run(model_dir: str, data: Path, work: Path, stop_at: int, max_steps: int = 6) -> None:
    """A run killed after step ``stop_at``, leaving checkpoints every 2 steps in ``work`` (the CLI's DIR.work)."""
    config = TrainingConfig(max_steps=max_steps, **FAST)
    with pytest.raises(KeyboardInterrupt):
        build_trainer(
            encoder_from_llm(model_dir, layers=2, max_seq_length=32),
            str(data),
            config,
            work,
            callbacks=[StopAt(stop_at)],
        ).train()


def train_argv(model_dir: str, data: Path, output: Path, *extra: str) -> list[str]:
    return [
        "train",
        model_dir,
        "--data",
        str(data),
        "--layers",
        "2",
        "--max-steps",
        "6",
        "--save-steps",
        "2",
        "--batch-size",
        "4",
        "--lora-r",
        "4",
        "--max-seq-length",
        "32",
        "--learning-rate",
        "1e-3",
        "--output",
        str(output),
        *extra,
    ]


def cli_train(model_dir: str, data: Path, output: Path, *extra: str) -> int:
    return cli.main(train_argv(model_dir, data, output, *extra))


def st_prune_lines(stderr: str) -> str:
    """st-prune's own line of stderr (progress bars aside), which must start a line and be the only one."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "st-prune train" in line]
    assert len(lines) == 1 and lines[0].startswith("st-prune train: "), stderr
    return lines[0]


# --- Ctrl-C -------------------------------------------------------------------------------------------
def test_ctrl_c_names_the_last_checkpoint_and_resume(model_dir, data, tmp_path, capsys, monkeypatch):
    real_build_trainer = training.build_trainer

    def build_and_stop_at_3(*args, callbacks=None, **kwargs):
        return real_build_trainer(*args, callbacks=[*(callbacks or []), StopAt(3)], **kwargs)

    monkeypatch.setattr(training, "build_trainer", build_and_stop_at_3)
    output = tmp_path / "model"
    assert cli_train(model_dir, data, output) == 130
    err = st_prune_lines(capsys.readouterr().err)
    checkpoint = tmp_path / "model.work" / "checkpoint-2"
    command = shlex.join(["st-prune", *train_argv(model_dir, data, output, "--resume")])
    assert err == f"st-prune train: interrupted; the last checkpoint is {checkpoint}; continue with `{command}`"
    assert not output.exists()

    monkeypatch.setattr(training, "build_trainer", real_build_trainer)
    assert cli.main(shlex.split(err.split("`")[1])[1:]) == 0  # the command the message names works
    assert (output / "modules.json").is_file()


def test_ctrl_c_before_the_first_checkpoint_says_so(model_dir, data, tmp_path, capsys, monkeypatch):
    real_build_trainer = training.build_trainer
    monkeypatch.setattr(
        training,
        "build_trainer",
        lambda *a, callbacks=None, **k: real_build_trainer(*a, callbacks=[*(callbacks or []), StopAt(1)], **k),
    )
    assert cli_train(model_dir, data, tmp_path / "model") == 130
    err = st_prune_lines(capsys.readouterr().err)
    command = shlex.join(["st-prune", *train_argv(model_dir, data, tmp_path / "model")])
    assert err == (
        "st-prune train: interrupted; no checkpoint was saved yet (one every 2 steps, --save-steps); "
        f"start again with `{command}`"
    )


# --- checkpoints damaged by a kill during their save ------------------------------------------------------
def _drop_trainer_state(checkpoint: Path) -> None:
    (checkpoint / "trainer_state.json").unlink()  # the trainer writes it last


def _truncate_adapter(checkpoint: Path) -> None:
    adapter = checkpoint / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, why",
    [
        (_drop_trainer_state, "no trainer_state.json"),
        (_truncate_adapter, "adapter_model.safetensors is truncated"),
    ],
)
def test_resume_skips_a_damaged_checkpoint_for_the_newest_intact_one(model_dir, data, tmp_path, caplog, damage, why):
    work = tmp_path / "model.work"
    interrupted_run(model_dir, data, work, stop_at=5)
    assert sorted(path.name for path in work.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    damage(work / "checkpoint-4")
    with caplog.at_level(logging.WARNING, logger="st_prune"):
        assert cli_train(model_dir, data, tmp_path / "model", "--resume") == 0
    skipped = [record.getMessage() for record in caplog.records if "Skipping damaged" in record.getMessage()]
    assert len(skipped) == 1, skipped
    assert skipped[0].startswith(f"Skipping damaged checkpoint(s) checkpoint-4: {why}"), skipped
    assert skipped[0].endswith("(interrupted while being saved); resuming from checkpoint-2"), skipped
    assert (tmp_path / "model" / "modules.json").is_file()


def test_resume_with_every_checkpoint_damaged_is_one_line(model_dir, data, tmp_path, capsys):
    work = tmp_path / "model.work"
    interrupted_run(model_dir, data, work, stop_at=3)
    _drop_trainer_state(work / "checkpoint-2")
    assert cli_train(model_dir, data, tmp_path / "model", "--resume") == 2
    err = st_prune_lines(capsys.readouterr().err)
    assert "is damaged" in err and "--overwrite" in err, err


def test_an_explicitly_named_damaged_checkpoint_is_refused(model_dir, data, tmp_path, capsys):
    work = tmp_path / "model.work"
    interrupted_run(model_dir, data, work, stop_at=3)
    _truncate_adapter(work / "checkpoint-2")
    assert cli_train(model_dir, data, tmp_path / "model", "--resume", str(work / "checkpoint-2")) == 2
    err = st_prune_lines(capsys.readouterr().err)
    assert "adapter_model.safetensors is truncated" in err, err


# --- the card of a resumed run -----------------------------------------------------------------------------
def test_resumed_card_has_the_whole_training_time_and_every_loss_row(model_dir, data, tmp_path):
    output, work = tmp_path / "model", tmp_path / "model.work"
    interrupted_run(model_dir, data, work, stop_at=3, max_steps=4)
    progress = work / "checkpoint-2" / training.CHECKPOINT_PROGRESS_NAME
    assert json.loads(progress.read_text())["train_seconds"] > 0
    # Pretend the part before the interruption took an hour, so the card's total is unmistakable.
    progress.write_text(json.dumps({"train_seconds": 3600.0}))
    train_pruned(
        encoder_from_llm(model_dir, layers=2, max_seq_length=32),
        str(data),
        TrainingConfig(max_steps=4, **FAST),
        output,
        resume=True,
    )
    card = (output / "README.md").read_text()
    assert "- **Training**: 1.0 hours" in card
    logged_steps = [int(step) for step in re.findall(r"^\| [0-9.]+\s+\| (\d+) +\|", card, flags=re.MULTILINE)]
    assert logged_steps == [1, 2, 3, 4], card[card.find("Training Logs") :][:600]
