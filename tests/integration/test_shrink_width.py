"""Issue 25.4: MLP width pruning (--mlp-keep F): one intermediate size for every kept layer, chosen by activations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer
from tiny_embedders import make_tiny_embedder
from tiny_models import CORPUS, make_tiny_llm
from transformers import AutoConfig, AutoModel

from st_prune import cli
from st_prune.model.truncated_llm import encoder_from_llm
from st_prune.model.width import channel_importance, prune_mlp_width

TEXTS = ["How do I reset my online banking password?", "Two dogs run across a green field in the sun.", "a"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    rows = [{"anchor": CORPUS[i], "positive": CORPUS[(i + 1) % len(CORPUS)]} for i in range(len(CORPUS))]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("llm") / "llama", "llama", 4)


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    run_cli.out = captured.out
    lines = captured.err.replace("\r", "\n").splitlines()
    return status, "\n".join(line for line in lines if line.startswith("st-prune "))


def test_width_cut_loads_in_plain_transformers_and_st(llama, data, tmp_path, capsys):
    status, err = run_cli(
        ["prune", llama, "--layers", 2, "--mlp-keep", 0.5, "--data", data, "--output", tmp_path / "out"], capsys
    )
    assert status == 0, err
    assert "MLP width 32/64" in run_cli.out
    config = AutoConfig.from_pretrained(tmp_path / "out")
    assert (config.num_hidden_layers, config.intermediate_size) == (2, 32)
    assert config.st_prune["width"]["mlp_keep"] == 0.5
    AutoModel.from_pretrained(tmp_path / "out")  # plain transformers: every tensor has the shape the config says
    weights = load_file(tmp_path / "out" / "model.safetensors")
    assert weights["layers.1.mlp.down_proj.weight"].shape == (32, 32)
    assert weights["layers.0.mlp.gate_proj.weight"].shape == (32, 32)
    model = SentenceTransformer(str(tmp_path / "out"))
    assert model.encode(TEXTS).shape == (3, 32)


def test_keep_one_is_exactly_the_depth_cut(llama, data, tmp_path, capsys):
    assert run_cli(["prune", llama, "--layers", 2, "--output", tmp_path / "depth"], capsys)[0] == 0
    assert (
        run_cli(
            ["prune", llama, "--layers", 2, "--mlp-keep", 1.0, "--data", data, "--output", tmp_path / "width"], capsys
        )[0]
        == 0
    )
    depth = load_file(tmp_path / "depth" / "model.safetensors")
    width = load_file(tmp_path / "width" / "model.safetensors")
    assert depth.keys() == width.keys()
    assert all(torch.equal(depth[name], width[name]) for name in depth)


def test_importance_drops_dead_channels_first(llama, data):
    """Channels whose up_proj row is zero never activate: a half-width cut drops exactly those, and then the model's
    embeddings are those of the depth-only cut."""
    model = encoder_from_llm(str(llama), layers=2)
    dead = torch.arange(0, 64, 2)  # every other channel, so "keep the first half" would be wrong
    with torch.no_grad():
        for layer in model[0].auto_model.layers:
            layer.mlp.up_proj.weight[dead] = 0
    before = model.encode(TEXTS, convert_to_tensor=True)
    gate = [layer.mlp.gate_proj.weight.clone() for layer in model[0].auto_model.layers]
    importance = channel_importance(model, [(CORPUS[:8], None)])
    assert all(float(scores[dead].max()) == 0.0 and float(scores[1::2].min()) > 0 for scores in importance)
    record = prune_mlp_width(model, 0.5, importance)
    assert record["intermediate_size"] == 32 and record["original_intermediate_size"] == 64
    for layer, original in zip(model[0].auto_model.layers, gate):
        assert torch.equal(layer.mlp.gate_proj.weight, original[1::2])
    assert torch.allclose(model.encode(TEXTS, convert_to_tensor=True), before, atol=1e-5)


def test_embedder_width_cut_keeps_its_modules(tmp_path, data, capsys):
    source = make_tiny_embedder(tmp_path / "qwen3", "qwen3_last_token")
    status, err = run_cli(
        ["prune", source, "--layers", 3, "--mlp-keep", 0.25, "--data", data, "--output", tmp_path / "out"], capsys
    )
    assert status == 0, err
    model = SentenceTransformer(str(tmp_path / "out"))
    assert model[0].auto_model.config.intermediate_size == 16 and model[1].pooling_mode == "lasttoken"
    assert model.prompts["query"].startswith("Instruct:")


@pytest.mark.parametrize("verb", ["prune", "train"])
@pytest.mark.parametrize("keep", ["0", "1.5", "-0.2", "nan"])
def test_width_fraction_outside_zero_one_is_refused(llama, data, tmp_path, capsys, keep, verb):
    status, err = run_cli(
        [verb, llama, "--layers", 2, "--mlp-keep", keep, "--data", data, "--output", tmp_path / "out"], capsys
    )
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "must be in (0, 1]" in err and "--mlp-keep 0.5" in err, err
    assert not (tmp_path / "out").exists()


def test_width_without_data_is_refused(llama, tmp_path, capsys):
    status, err = run_cli(["prune", llama, "--layers", 2, "--mlp-keep", 0.5, "--output", tmp_path / "out"], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "give --data FILE" in err, err
    assert not (tmp_path / "out").exists()


def test_train_an_embedder_with_width(tmp_path, data, capsys):
    """`st-prune train` on a trained embedder with --mlp-keep: the export is that embedder, shallower and narrower."""
    source = make_tiny_embedder(tmp_path / "dense", "llama_mean_dense")
    status, err = run_cli(
        [
            "train",
            source,
            "--data",
            data,
            "--layers",
            2,
            "--mlp-keep",
            0.5,
            "--max-steps",
            2,
            "--batch-size",
            4,
            "--save-steps",
            100,
            "--output",
            tmp_path / "out",
        ],
        capsys,
    )
    assert status == 0, err
    assert "MLP width 32/64" in run_cli.out
    model = SentenceTransformer(str(tmp_path / "out"))
    config = model[0].auto_model.config
    assert (config.num_hidden_layers, config.intermediate_size) == (2, 32)
    assert type(model[2]).__name__ == "Dense" and model[1].pooling_mode == "mean"
    assert model.similarity_fn_name == "dot"
    assert model.encode(TEXTS).shape == (3, 16)


def test_width_on_a_fused_mlp_is_refused(tmp_path, data, capsys):
    """Phi-3 fuses gate and up into one gate_up_proj: no width cut, one line saying to cut depth only."""
    phi3 = make_tiny_llm(tmp_path / "phi3", "phi3", 4)
    status, err = run_cli(
        ["prune", phi3, "--layers", 2, "--mlp-keep", 0.5, "--data", data, "--output", tmp_path / "out"], capsys
    )
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "'phi3' has none; cut its depth only (leave out --mlp-keep)" in err
    assert not (tmp_path / "out").exists()
