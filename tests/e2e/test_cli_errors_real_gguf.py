"""A real SmolLM2 GGUF cut short, as an interrupted download leaves it, is one line saying it is damaged."""

from __future__ import annotations

import pytest
from cli_errors import assert_one_line, run_cli


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
