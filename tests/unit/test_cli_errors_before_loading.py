"""Bad input refused in one line (exit status 2) before any model exists: missing models, recipe ranges, eval paths."""

from __future__ import annotations

import pytest
from cli_errors import assert_one_line, run_cli


# --- missing models ---------------------------------------------------------------------------------
def test_missing_model_path_is_one_line(tmp_path, capsys):
    status, err = run_cli(["prune", "./nope", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "model not found: ./nope", "check the path")
    assert not (tmp_path / "out").exists()


def test_missing_hub_id_offline_names_hf_download(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # As a user's HF_HUB_OFFLINE=1 reads at import; the variable alone let the client try huggingface.co with
    # back-off (24 s without a network) before the offline message.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    status, err = run_cli(["prune", "nope-org/nope-model", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "HF_HUB_OFFLINE=1", "hf download nope-org/nope-model")


def test_folder_without_config_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, err = run_cli(["prune", tmp_path / "empty", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "has no config.json")


# --- out-of-range recipe values: refused when the recipe is loaded (--dry-run too), not stages later ----------
@pytest.mark.parametrize(
    "override, rule",
    [
        ("evaluation.batch_size=0", "evaluation.batch_size must be at least 1, got 0"),
        ("training.learning_rate=-1", "training.learning_rate must be a positive number"),
        ("training.lora.r=-3", "training.lora.r must be 0 or more (0 trains all weights"),
        ("scan.scale=0", "scan.scale must be a positive number"),
        ("training.warmup_steps=-5", "training.warmup_steps must be 0 or more, got -5"),
        ("training.lora.dropout=1.5", "training.lora.dropout must be in [0, 1)"),
        ("training.scale=.nan", "training.scale must be a positive number"),
    ],
)
def test_out_of_range_recipe_values_fail_the_dry_run(override, rule, capsys):
    status, err = run_cli(["run", "smollm2-135m-instruct-cpu", "--set", override, "--dry-run"], capsys)
    key = override.split("=")[0]
    assert_one_line(status, err, rule, f"--set {key}=")


# --- eval --------------------------------------------------------------------------------------------------
def test_eval_of_a_missing_folder_says_not_found(tmp_path, capsys):
    status, err = run_cli(
        [
            "eval",
            tmp_path / "zoo" / "nothere",
            "--tasks",
            "STS17",
            "--model-name",
            "org/m",
            "--output",
            tmp_path / "results",
        ],
        capsys,
    )
    assert_one_line(status, err, "zoo/nothere not found")
    assert "modules.json" not in err
