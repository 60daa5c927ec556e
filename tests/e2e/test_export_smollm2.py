"""The real SmolLM2 GGUF, cut and exported, loads in plain sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest
from export_texts import TEXTS
from plain_st import encode_in_plain_process

from st_prune import encoder_from_llm, export_model
from st_prune.model.export import weight_bytes


@pytest.mark.real_llm
def test_real_smollm2_export_loads_in_plain_sentence_transformers(smollm2_gguf, tmp_path):
    model = encoder_from_llm(str(smollm2_gguf), layers=7, max_seq_length=128)
    expected = model.encode(TEXTS)
    output = export_model(model, tmp_path / "smollm2-7")
    embeddings, _ = encode_in_plain_process(output, TEXTS, tmp_path)
    assert np.abs(embeddings - expected).max() <= 1e-5
    parameters = sum(parameter.numel() for parameter in model.parameters())
    assert abs(weight_bytes(output) - 4 * parameters) <= 0.01 * 4 * parameters
    assert 50e6 < parameters < 56e6  # 7 of 30 layers + 28M embedding
