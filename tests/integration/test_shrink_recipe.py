"""Issue 25.1/25.4 in recipes: a trained embedder as `base`, `mlp_keep` on the base or a variant, width on the card."""

from __future__ import annotations

import pytest
from recipe_files import write_recipe
from sentence_transformers import SentenceTransformer
from tiny_embedders import QWEN3_PROMPTS, make_tiny_embedder
from tiny_models import make_tiny_llm

from st_prune import cli
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner


@pytest.fixture(autouse=True)
def no_hub_token(monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_recipe_on_an_embedder_with_a_width_variant(tmp_path):
    source = make_tiny_embedder(tmp_path / "qwen3-embedder", "qwen3_last_token")
    variants = [{"name": "narrow", "layers": 2, "mlp_keep": 0.5}, {"name": "deep", "layers": 3}]
    # 64 tokens: the tiny tokenizer spells the embedder's "Instruct: ...\nQuery:" prompts nearly a token a character
    recipe = load_recipe(write_recipe(tmp_path, source, variants=variants, base__max_seq_length=64))
    assert recipe.base.kind is None and [recipe.mlp_keep_of(v) for v in recipe.variants] == [0.5, 1.0]
    runner = RecipeRunner(recipe, tmp_path / "run", log=lambda _: None)
    runner.run()
    ctx = runner.ctx
    assert ctx.is_embedder()
    narrow, deep = recipe.variants
    model = SentenceTransformer(str(ctx.export_dir(narrow)))  # plain sentence-transformers
    config = model[0].auto_model.config
    assert (config.num_hidden_layers, config.intermediate_size) == (2, 32)
    assert model[1].pooling_mode == "lasttoken" and model.prompts["query"] == QWEN3_PROMPTS["query"]
    assert SentenceTransformer(str(ctx.export_dir(deep)))[0].auto_model.config.intermediate_size == 64
    prune = ctx.folder.record(narrow.name, "prune.json", stage="prune")
    assert prune["width"] == {"mlp_keep": 0.5, "intermediate_size": 32, "original_intermediate_size": 64}
    card = next(path for path in ctx.export_dir(narrow).parent.rglob("README.md") if "MLP channels" in path.read_text())
    assert "| MLP channels per layer (width) | 32 (50 %" in card.read_text()
    assert "text encoder made from the sentence-transformers embedder" in card.read_text()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("base.mlp_keep=0", "base.mlp_keep must be in (0, 1]"),
        ("variants.0.mlp_keep=1.5", "variants.0.mlp_keep must be in (0, 1]"),
    ],
)
def test_width_out_of_range_in_a_recipe_is_one_line(tmp_path, capsys, override, message):
    recipe = write_recipe(tmp_path, make_tiny_llm(tmp_path / "llm", "llama", 4))
    status = cli.main(["run", str(recipe), "--output", str(tmp_path / "out"), "--dry-run", "--set", override])
    # Building the tiny model wrote progress bars to stderr too; st-prune's own lines are what the user reads.
    err = "\n".join(
        line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("st-prune ")
    )
    assert status == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_kind_that_does_not_match_the_model_is_refused(tmp_path):
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            make_tiny_llm(tmp_path / "llm", "llama", 4),
            base={"model": str(tmp_path / "llm"), "kind": "sentence-transformers"},
        )
    )
    with pytest.raises(Exception, match="base.kind is sentence-transformers but .* is no sentence-transformers model"):
        RecipeRunner(recipe, tmp_path / "run", log=lambda _: None).ctx.is_embedder()
