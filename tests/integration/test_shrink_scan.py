"""Issue 25.2: L3Prune on a trained embedder scans with the model's own pooling, Dense/Normalize and prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from tiny_embedders import make_tiny_embedder
from tiny_models import CORPUS

from st_prune import cli
from st_prune.l3prune.scan import L3Prune, L3PruneResult, select_depths
from st_prune.model import architectures


@pytest.mark.parametrize("shape", ["qwen3_last_token", "llama_mean_dense"])
def test_scan_of_an_embedder_is_the_loss_of_its_cuts(tmp_path, capsys, shape):
    source = make_tiny_embedder(tmp_path / shape, shape)
    data = tmp_path / "triplets.jsonl"
    rows = [{"anchor": CORPUS[i], "positive": CORPUS[i + 1], "negative": CORPUS[i + 3]} for i in range(24)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    status = cli.main(
        [
            "scan",
            str(source),
            "--data",
            str(data),
            "--batch-size",
            "4",
            "--num-batches",
            "4",
            "--scale",
            "20",
            "--output",
            str(tmp_path / "scan.json"),
            "--no-plot",
        ]
    )
    assert status == 0, capsys.readouterr().err
    result = L3PruneResult.load(tmp_path / "scan.json")

    # The same rows, embedded by the plain embedder cut to each depth, queries and documents as it embeds them.
    batches = L3Prune(batch_size=4, num_batches=4, seed=42).sample(str(data))
    expected = np.zeros((len(batches), 4))
    for depth in range(1, 5):
        model = SentenceTransformer(str(source))
        architectures.cut_model(model[0].auto_model, depth)
        loss = MultipleNegativesRankingLoss(model, scale=20)
        for number, batch in enumerate(batches):
            with torch.inference_mode():
                columns = [
                    model.encode_query(batch.texts["anchor"], convert_to_tensor=True),
                    model.encode_document(batch.texts["positive"], convert_to_tensor=True),
                    model.encode_document(batch.texts["negative"], convert_to_tensor=True),
                ]
                expected[number, depth - 1] = float(loss.compute_loss_from_embeddings(columns, None))
    assert np.allclose(result.batch_losses, expected, atol=1e-4), (result.losses, expected.mean(axis=0))
    assert (result.small, result.large) == select_depths(expected.mean(axis=0).tolist())
    confidence = result.pick_confidence()
    assert confidence is not None and confidence["batches"] == 4
