"""Issue 25.1: a trained sentence-transformers embedder as input; its cut is that model with fewer layers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_errors import run_cli
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import (
    Normalize,
    Pooling,
    StaticEmbedding,
    Transformer,
)
from tiny_embedders import (
    MISTRAL_PROMPTS,
    PLAIN_TEXT,
    QWEN3_PROMPTS,
    SHAPES,
    make_tiny_embedder,
)
from tiny_models import build_tokenizer, make_tiny_bert

from st_prune.model import architectures
from st_prune.model.truncated_llm import TruncatedLLM, encoder_from_llm

TEXTS = [
    "How do I reset my online banking password?",
    "Two dogs run across a green field in the sun.",
    "a",
    "Sentence embeddings map text to vectors for semantic search, and large language models do it well.",
]


@pytest.fixture(scope="module")
def embedders(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedders")
    return {shape: make_tiny_embedder(root / shape, shape) for shape in SHAPES}


def truncated_reference(folder: Path, layers: int) -> SentenceTransformer:
    """The uncut embedder loaded by plain sentence-transformers, its decoder stack cut to ``layers`` (final norm kept)."""
    model = SentenceTransformer(str(folder))
    architectures.cut_model(model[0].auto_model, layers)
    return model


def assert_same_embeddings(cut: SentenceTransformer, reference: SentenceTransformer) -> None:
    for kwargs in ({}, *({"prompt_name": name} for name, prompt in reference.prompts.items() if prompt)):
        ours = cut.encode(TEXTS, convert_to_tensor=True, **kwargs)
        theirs = reference.encode(TEXTS, convert_to_tensor=True, **kwargs)
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-5), (kwargs, (ours - theirs).abs().max())


@pytest.mark.parametrize("shape", SHAPES)
def test_prune_keeps_the_embedder(embedders, tmp_path, capsys, shape):
    source = embedders[shape]
    status, err = run_cli(["prune", source, "--layers", 2, "--output", tmp_path / "cut"], capsys)
    assert status == 0, err
    cut = SentenceTransformer(str(tmp_path / "cut"))  # plain sentence-transformers, built-in types only
    reference = truncated_reference(source, 2)
    # The source is the layout the issue names (so the checks below check that layout is kept).
    layout = {
        "qwen3_last_token": ("lasttoken", QWEN3_PROMPTS["query"], "left", "Normalize"),
        "mistral_eos": ("lasttoken", MISTRAL_PROMPTS["query"], "right", "Normalize"),
        "llama_mean_dense": ("mean", "", "right", "Dense"),
    }[shape]
    assert (
        reference[1].pooling_mode,
        reference.prompts.get("query", ""),
        reference.tokenizer.padding_side,
        type(reference[2]).__name__,
    ) == layout
    if shape != "llama_mean_dense":
        assert reference.tokenizer("probe")["input_ids"][-1] == reference.tokenizer.eos_token_id
    assert [type(module) for module in cut] == [type(module) for module in reference]
    assert cut[0].auto_model.config.num_hidden_layers == 2
    assert cut[1].pooling_mode == reference[1].pooling_mode
    assert cut.prompts == reference.prompts and cut.default_prompt_name == reference.default_prompt_name
    assert cut.similarity_fn_name == reference.similarity_fn_name
    assert cut.max_seq_length == reference.max_seq_length == 96
    assert cut.tokenizer.padding_side == reference.tokenizer.padding_side
    assert cut.tokenizer("probe")["input_ids"] == reference.tokenizer("probe")["input_ids"]
    assert_same_embeddings(cut, reference)
    types = [entry["type"] for entry in json.loads((tmp_path / "cut" / "modules.json").read_text())]
    assert all(name.startswith("sentence_transformers.models.") for name in types), types


def test_truncated_llm_and_encoder_from_llm_take_the_embedder(embedders):
    source = embedders["qwen3_last_token"]
    module = TruncatedLLM(str(source), layers=3)
    assert module.num_layers == 3 and module.max_seq_length == 96
    assert module.tokenizer.padding_side == "left"  # its own, not st-prune's right padding for LLMs
    model = encoder_from_llm(str(source), layers=3)
    assert_same_embeddings(model, truncated_reference(source, 3))


def test_api_pooling_that_differs_is_refused(embedders):
    with pytest.raises(Exception, match="'lasttoken' pooling, and its cut keeps it; leave out --pooling"):
        encoder_from_llm(str(embedders["qwen3_last_token"]), layers=2, pooling="mean")


# --- bad input: one line naming the fix, exit 2, nothing written ------------------------------------------------
def assert_refused(status: int, err: str, output: Path, *phrases: str) -> None:
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    for phrase in phrases:
        assert phrase in err, err
    assert not output.exists()


def test_encoder_first_module_is_refused(tmp_path, capsys):
    bert = make_tiny_bert(tmp_path / "bert")
    transformer = Transformer(str(bert), modality_config=PLAIN_TEXT, module_output_name="token_embeddings")
    SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Normalize()]).save(str(tmp_path / "st-bert"))
    status, err = run_cli(["prune", tmp_path / "st-bert", "--layers", 1, "--output", tmp_path / "out"], capsys)
    assert_refused(status, err, tmp_path / "out", "'bert' is an encoder-only model", "decoder-only LLMs")


def test_first_module_that_is_no_transformer_is_refused(tmp_path, capsys):

    embedding = StaticEmbedding(build_tokenizer(), embedding_dim=8)
    SentenceTransformer(modules=[embedding]).save(str(tmp_path / "static"))
    status, err = run_cli(["prune", tmp_path / "static", "--layers", 1, "--output", tmp_path / "out"], capsys)
    assert_refused(status, err, tmp_path / "out", "not a Transformer over a decoder LLM")


def test_cut_deeper_than_the_embedder_is_refused(embedders, tmp_path, capsys):
    status, err = run_cli(["prune", embedders["mistral_eos"], "--layers", 9, "--output", tmp_path / "out"], capsys)
    assert_refused(status, err, tmp_path / "out", "layers must be an integer in [1, 4] for this 4-layer model")


def test_pooling_flag_on_an_embedder_is_refused(embedders, tmp_path, capsys):
    status, err = run_cli(
        [
            "prune",
            embedders["llama_mean_dense"],
            "--layers",
            2,
            "--pooling",
            "last_token",
            "--output",
            tmp_path / "out",
        ],
        capsys,
    )
    assert_refused(status, err, tmp_path / "out", "leave out --pooling")


def test_legacy_layout_with_the_transformer_in_a_subfolder(embedders, tmp_path, capsys):
    """Older sentence-transformers models keep the Transformer in 0_Transformer/ and name modules by their legacy
    types; the cut reads the Transformer there (config, weights, tokenizer, sentence_bert_config)."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(embedders["llama_mean_dense"], legacy)
    (legacy / "0_Transformer").mkdir()
    for path in legacy.iterdir():
        if path.is_file() and path.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            path.rename(legacy / "0_Transformer" / path.name)
    modules = json.loads((legacy / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    for entry in modules:
        entry["type"] = "sentence_transformers.models." + entry["type"].rsplit(".", 1)[-1]
    (legacy / "modules.json").write_text(json.dumps(modules))
    reference = SentenceTransformer(str(legacy))
    assert not (legacy / "config.json").exists()
    status, err = run_cli(["prune", legacy, "--layers", 3, "--output", tmp_path / "cut"], capsys)
    assert status == 0, err
    architectures.cut_model(reference[0].auto_model, 3)
    assert_same_embeddings(SentenceTransformer(str(tmp_path / "cut")), reference)
