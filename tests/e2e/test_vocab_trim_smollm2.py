"""Vocabulary trimming on the real SmolLM2: exact on its corpus, the held-out share still measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plain_st import encode_in_plain_process
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from vocab_trim import OTHER_TEXTS, TRIM_CORPUS, encoder_folder, tokens

import st_prune
from st_prune import encoder_from_llm, export_model
from st_prune.cli import main as cli_main
from st_prune.trim.vocab import REPORT_FILE, trim_vocabulary


@pytest.mark.real_llm
def test_real_smollm2_trims_exactly(smollm2_gguf, tmp_path):
    source = export_model(encoder_from_llm(str(smollm2_gguf), layers=2, max_seq_length=64), tmp_path / "smollm2")
    corpus = TRIM_CORPUS + ["Given a query, retrieve relevant passages: how do I install a Debian package?"]
    report = trim_vocabulary(source, corpus, tmp_path / "trimmed", held_out=OTHER_TEXTS)
    assert report.tokenizer == "byte-level BPE" and report.kept_alphabet > 200
    assert report.vocab_after < 1000 < 49152 == report.vocab_before
    assert report.parameters_after < report.parameters_before - 27_000_000  # most of 49,152 x 576 is gone
    assert tokens(tmp_path / "trimmed", corpus) == tokens(source, corpus)
    expected = SentenceTransformer(str(source)).encode(corpus, convert_to_numpy=True)
    plain, _ = encode_in_plain_process(tmp_path / "trimmed", corpus, tmp_path)
    np.testing.assert_allclose(plain, expected, atol=1e-5)
    original = Tokenizer.from_file(str(source / "tokenizer.json"))
    trimmed = Tokenizer.from_file(str(tmp_path / "trimmed" / "tokenizer.json"))
    for text in OTHER_TEXTS:
        assert trimmed.decode(trimmed.encode(text).ids) == original.decode(original.encode(text).ids)


@pytest.mark.real_llm
def test_every_corpus_text_embeds_as_before_and_the_held_out_share_is_still_measured(smollm2_gguf, tmp_path, capsys):
    """Issue 23 case 12: the CLI's default held-out split (10 % of --corpus) once went uncounted, so corpus texts
    lost tokens (52 of these 600 STS-B sentences, e.g. "pants" -> "p ants"). SmolLM2's real byte-level BPE on a
    tiny random Llama: the split now only measures, against a second vocabulary, and every corpus text keeps its
    tokens and its embedding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    source = encoder_folder(tmp_path, "llama", tokenizer, "weighted_mean")
    rows = [
        json.loads(line)
        for line in (Path(st_prune.__file__).parent / "recipes" / "data" / "stsb-dev-300.jsonl")
        .read_text()
        .splitlines()
    ]
    corpus = [row[column] for row in rows for column in ("sentence1", "sentence2")]
    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n")
    trimmed = tmp_path / "trimmed"
    assert cli_main(["trim", str(source), "--corpus", str(tmp_path / "corpus.txt"), "--output", str(trimmed)]) == 0
    capsys.readouterr()

    assert tokens(trimmed, corpus) == tokens(source, corpus)  # renumbered ids, the same tokens
    before = SentenceTransformer(str(source)).encode(corpus, convert_to_numpy=True)
    after = SentenceTransformer(str(trimmed)).encode(corpus, convert_to_numpy=True)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    report = json.loads((trimmed / REPORT_FILE).read_text())
    assert report["corpus_texts"] == report["verified_texts"] == 600 and report["vocab_before"] == 49152
    # The held-out figure still measures texts a vocabulary never saw (the shipped one saw them all: 0 %).
    assert report["held_out_texts"] == 60 and report["held_out_changed_share"] > 0.5
    assert "the shipped vocabulary counts every corpus text" in report["held_out_source"]
    assert report["held_out_source"] in " ".join((trimmed / "README.md").read_text().split())
