"""The real SmolLM2 GGUF cut at layer k equals its layer-k hidden states after the final norm."""

from __future__ import annotations

import pytest
import torch
from truncated_llm import TEXTS, reference_embeddings

from st_prune import encoder_from_llm
from st_prune.model.truncated_llm import dequantized_gguf_folder


@pytest.mark.real_llm
def test_real_smollm2_gguf_cut_equals_layer_k(smollm2_gguf):
    folder = dequantized_gguf_folder(smollm2_gguf)
    model = encoder_from_llm(str(smollm2_gguf), layers=7, normalize=False)
    assert (model[0].num_layers, model[0].num_original_layers, model.get_embedding_dimension()) == (7, 30, 576)
    assert model[0].provenance["base_model"] == smollm2_gguf.name
    torch.testing.assert_close(
        model.encode(TEXTS, convert_to_tensor=True), reference_embeddings(folder, 7), atol=1e-4, rtol=1e-4
    )
