"""Trim corpora read from .csv, .parquet and .txt files."""

from __future__ import annotations

import pytest
from datasets import Dataset

from st_prune.trim.vocab import read_corpus


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".txt"])
def test_corpus_formats(tmp_path, suffix):
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".txt":
        path.write_text("first text\n\nsecond text\n")
        assert read_corpus(path) == ["first text", "second text"]
        return
    table = Dataset.from_list([{"text": "first text", "label": 3}, {"text": "second text", "label": 4}])
    table.to_csv(str(path)) if suffix == ".csv" else table.to_parquet(str(path))
    assert read_corpus(path) == ["first text", "second text"]
