"""L3Prune: the one-pass scan equals physically cut models; the paper's picks; budgets; files; CLI; bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from datasets import DatasetDict
from l3prune_data import PNG_MAGIC, triplets
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)

from st_prune import encoder_from_llm
from st_prune.cli import main
from st_prune.errors import StPruneError
from st_prune.l3prune.scan import L3Prune, L3PruneResult, LayerTap
from st_prune.model import architectures
from st_prune.prompt_format import instruction_prompt


def reference_losses(folder: Path, selector: L3Prune, data, pooling: str, padding_side: str, prompts=None):
    """Per-depth (mean, std) of ST's own forward + MultipleNegativesRankingLoss on models cut to k layers."""
    batches = selector.sample(data, prompts)
    total = architectures.num_layers(__import__("transformers").AutoConfig.from_pretrained(folder))
    means, stds = [], []
    for depth in range(1, total + 1):
        model = encoder_from_llm(str(folder), layers=depth, pooling=pooling, max_seq_length=64)
        model.tokenizer.padding_side = padding_side
        loss = MultipleNegativesRankingLoss(model, scale=selector.scale)
        with torch.no_grad():
            values = torch.tensor(
                [
                    loss([model.preprocess(b.texts[c], prompt=b.prompts[c]) for c in b.texts], None).item()
                    for b in batches
                ],
                dtype=torch.float64,
            )
        means.append(values.mean().item())
        stds.append(values.std(unbiased=False).item())
    return means, stds, batches


# ---------------------------------------------------------------------------------------------------------------------
# Exactness: scan at depth k == the model cut to k layers, through plain sentence-transformers
# ---------------------------------------------------------------------------------------------------------------------
CASES = [
    # family, pooling, padding side, how the anchor gets its prompt
    ("llama", "weighted_mean", "right", "instruction column"),
    ("qwen2", "last_token", "right", "none"),
    ("gemma3_text", "mean", "left", "trainer prompts"),
    ("phi3", "last_token", "left", "instruction column"),
]


@pytest.mark.parametrize("family,pooling,padding_side,prompting", CASES)
def test_scan_equals_physically_cut_models(tiny_llm, family, pooling, padding_side, prompting):
    folder = tiny_llm(family, layers=4)
    selector = L3Prune(batch_size=4, num_batches=3, seed=7, show_progress_bar=False)
    prompts = None
    if prompting == "instruction column":
        data = triplets(24, instructions=["Given a question, retrieve the answer", "Retrieve similar text."])
    elif prompting == "trainer prompts":
        data = DatasetDict({"a": triplets(8, seed=1), "b": triplets(8, seed=2)})
        prompts = {"a": {"anchor": instruction_prompt("Find the dog")}, "b": {"anchor": "query: ", "positive": "doc: "}}
    else:
        data = triplets(12)

    model = encoder_from_llm(str(folder), pooling=pooling, max_seq_length=64)
    model.tokenizer.padding_side = padding_side
    result = selector.select(model, data, prompts)
    expected, expected_std, batches = reference_losses(folder, selector, data, pooling, padding_side, prompts)

    assert result.num_layers == 4
    assert any(prompt for batch in batches for prompt in batch.prompts.values()) == (prompting != "none")
    for depth in range(4):
        assert result.losses[depth] == pytest.approx(expected[depth], abs=1e-5), f"depth {depth + 1}"
        assert result.stds[depth] == pytest.approx(expected_std[depth], abs=1e-5), f"depth {depth + 1}"
    assert len(architectures.decoder_layers(model[0].auto_model)) == 4  # the scan does not modify the model


def test_hooks_accept_tuple_and_tensor_layer_outputs_and_keep_only_pooled_vectors(tiny_llm):
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    features = model.preprocess(["a dog runs", "the quick brown fox jumps"])
    with torch.inference_mode(), LayerTap(model) as tap:
        pooled = tap.run(model, features)
        hidden = torch.randn(2, features["input_ids"].shape[1], 32)
        tap.features = features
        tap._hook(0)(None, None, hidden)
        from_tensor = tap.pooled[0]
        tap._hook(0)(None, None, (hidden, None))
        from_tuple = tap.pooled[0]
    assert pooled.shape == (4, 2, 32)  # L x B x H, nothing token-sized kept
    assert torch.equal(from_tensor, from_tuple)
    assert not any(layer._forward_hooks for layer in architectures.decoder_layers(model[0].auto_model))


def test_prune_cuts_in_place_and_refuses_another_depth(tiny_llm):
    folder = str(tiny_llm("qwen2", layers=4))
    model = encoder_from_llm(folder, max_seq_length=64)
    result = L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).select(model, triplets(8))
    assert result.parameters[-1] == sum(p.numel() for p in model.parameters())
    assert result.prune(model, "small") is model
    assert model[0].num_layers == result.small
    assert result.parameters[result.small - 1] == sum(p.numel() for p in model.parameters())
    assert model.encode(["a dog"]).shape == (1, 32)
    with pytest.raises(StPruneError, match="4-layer"):
        result.prune(encoder_from_llm(folder, layers=3), "large")


def test_measured_latency_covers_every_depth(tiny_llm):
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    result = L3PruneResult([1.0, 2.0, 3.0, 4.0])
    ratios = result.measure_latency(model, ["a dog runs in the field"] * 4, depths=[1, 4], repeats=2)
    assert len(ratios) == 4 and ratios[-1] == 1.0 and all(r > 0 for r in ratios)
    assert result.latency_source == "measured"


def test_one_layer_model_and_nan_losses_are_reported(tiny_llm):
    data = triplets(8)
    one = encoder_from_llm(str(tiny_llm("llama", layers=1)), max_seq_length=64)
    with pytest.raises(StPruneError, match="at least 2"):
        L3Prune(batch_size=4, show_progress_bar=False).select(one, data)
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    with torch.no_grad():
        architectures.decoder_layers(model[0].auto_model)[2].mlp.down_proj.weight.fill_(math.nan)
    with pytest.raises(StPruneError, match=r"nan at depth\(s\) 3, 4"):
        L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).select(model, data)
    with pytest.raises(StPruneError, match="depth"):
        L3PruneResult([1.0, math.nan, 2.0])


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def test_cli_scan_end_to_end(tiny_llm, tmp_path, capsys):
    data = tmp_path / "triplets.jsonl"
    rows = triplets(12, instructions=["Find the answer"]).to_list()
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out" / "scan.json"
    argv = [
        "scan",
        str(tiny_llm("gemma3_text", layers=4)),
        "--data",
        str(data),
        "--batch-size",
        "4",
        "--num-batches",
        "3",
        "--max-seq-length",
        "64",
        "--output",
        str(output),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    stored = json.loads(output.read_text())
    assert len(stored["losses"]) == stored["num_layers"] == 4
    assert f"small: keep {stored['small']}/4 layers" in printed and f"large: keep {stored['large']}/4" in printed
    assert "parameters" in printed
    assert output.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert (stored["batch_size"], stored["num_batches"], stored["seed"], stored["scale"]) == (4, 3, 42, 50.0)

    assert main([*argv[:5], "1"]) == 2  # batch size 1
    assert "batch_size must be an integer >= 2" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["scan", "no-such-model", "--data", str(empty)]) == 2  # data checked before the model loads
    assert "no rows" in capsys.readouterr().err
