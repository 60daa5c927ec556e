"""Bad input to every verb ends in one line naming the fix and exit status 2, never a traceback (issue 15)."""

from __future__ import annotations

import pytest

from st_prune import cli


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``st-prune ARGV``; an exception escaping ``main`` fails the test as a traceback."""
    capsys.readouterr()
    status = cli.main([str(arg) for arg in argv])
    return status, capsys.readouterr().err.strip()


def assert_one_line(status: int, err: str, *phrases: str) -> None:
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    for phrase in phrases:
        assert phrase in err, err


# --- missing models ---------------------------------------------------------------------------------
def test_missing_model_path_is_one_line(tmp_path, capsys):
    status, err = run_cli(["prune", "./nope", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "model not found: ./nope", "check the path")
    assert not (tmp_path / "out").exists()


def test_missing_hub_id_offline_names_hf_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, err = run_cli(["prune", "nope-org/nope-model", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "HF_HUB_OFFLINE=1", "hf download nope-org/nope-model")


def test_folder_without_config_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, err = run_cli(["prune", tmp_path / "empty", "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "has no config.json")


# --- damaged GGUF files (a real file cut short, as an interrupted download leaves it) --------------------
@pytest.mark.real_llm
@pytest.mark.parametrize("keep", [1_000_000, 0.5], ids=["1MB", "half"])
def test_truncated_gguf_says_damaged(smollm2_gguf, tmp_path, capsys, monkeypatch, keep):
    monkeypatch.setenv("ST_PRUNE_CACHE", str(tmp_path / "cache"))
    size = smollm2_gguf.stat().st_size
    cut = tmp_path / smollm2_gguf.name
    with smollm2_gguf.open("rb") as source:
        cut.write_bytes(source.read(keep if isinstance(keep, int) else int(size * keep)))
    status, err = run_cli(["prune", cut, "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "is damaged or incomplete", "download it again")
    assert "quantization" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("config.json"))
