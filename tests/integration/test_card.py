"""Model cards: every section and metadata field, rendered from the run's files, and nothing unsafe in them."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from tiny_models import make_tiny_llm  # noqa: E402

from st_prune.card.render import render_card  # noqa: E402
from st_prune.errors import StPruneError  # noqa: E402
from st_prune.evaluation.tasks import PAPER_CITATION  # noqa: E402
from st_prune.pipeline.recipe import load_recipe  # noqa: E402
from st_prune.pipeline.runner import RecipeRunner  # noqa: E402
from st_prune.pipeline.stages.card import card_inputs  # noqa: E402
from st_prune.pipeline.stages.zoo_index import render_zoo_readme  # noqa: E402
from st_prune.util.machine import machine_description  # noqa: E402

SECTIONS = (
    "## Pruning",
    "### L3Prune layer selection",
    "## Training",
    "## Evaluation",
    "## Usage",
    "## Model details",
    "## License",
    "## Citation",
)


@pytest.fixture(scope="module")
def card_run(tmp_path_factory):
    """A local run (no publishing) of a tiny recipe with a fixed 3-layer variant and an L3Prune pick."""
    folder = tmp_path_factory.mktemp("card")
    model = make_tiny_llm(folder / "tiny-qwen2", "qwen2", layers=4)
    data = folder / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"anchor": f"query {i} about cats", "positive": f"cats {i} sleep", "negative": f"dogs {i} run"})
            + "\n"
            for i in range(8)
        )
    )
    sts = folder / "sts.jsonl"
    sts.write_text(
        "".join(
            json.dumps({"sentence1": f"a cat {i}", "sentence2": f"a dog {i % 3}", "score": float(i % 4)}) + "\n"
            for i in range(10)
        )
    )
    recipe = {
        "name": "card-test",
        "base": {"model": str(model), "id": "st-prune-test/tiny-qwen2", "max_seq_length": 32},
        "variants": [{"name": "three", "layers": 3}, {"name": "small", "pick": "small"}],
        "query_instruction": "Given a question, retrieve passages that answer it",
        "scan": {"batch_size": 4, "num_batches": 1},
        "training": {"steps": 2, "batch_size": 4, "warmup_steps": 0},
        "data": {"path": str(data), "names": ["st-prune-test/cats"]},
        "evaluation": {"local_tasks": [{"path": str(sts), "type": "sts", "name": "CatSTS"}]},
        "publish": {"org": "st-prune-test"},
        "card": {"license": "apache-2.0", "language": ["en"], "license_terms": "Keep the licence notice."},
    }
    path = folder / "card-test.yaml"
    path.write_text(yaml.safe_dump(recipe))
    output = folder / "run"
    runner = RecipeRunner(load_recipe(path), output, log=lambda _: None)
    runner.run()
    readme = (output / "models" / "tiny-qwen2-l3prune-three" / "README.md").read_text()
    return {"runner": runner, "readme": readme, "output": output, "folder": folder}


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def test_card_metadata_has_every_hub_field(card_run):
    meta, _ = split_card(card_run["readme"])
    assert meta["base_model"] == "st-prune-test/tiny-qwen2"
    assert meta["base_model_relation"] == "finetune"
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert {"l3prune", "pruned", "sentence-transformers", "feature-extraction", "mteb"} <= set(meta["tags"])
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert meta["datasets"] == ["st-prune-test/cats"]
    (result,) = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "st-prune-test/tiny-qwen2-l3prune-three"
    assert result["dataset"]["name"] == "CatSTS" and result["metrics"][0]["type"] == "cosine_spearman"
    eval_json = json.loads((card_run["output"] / "work" / "three" / "eval.json").read_text())
    assert result["metrics"][0]["value"] == pytest.approx(100 * eval_json["scores"]["CatSTS"], abs=0.01)


def test_card_has_every_section_and_the_run_facts(card_run):
    _, body = split_card(card_run["readme"])
    for section in SECTIONS:
        assert section in body, section
    assert "first **3 of 4** decoder layers (a fixed 3-layer cut)" in body
    assert "| Decoder layers | 3 | 4 |" in body
    assert "Parameters pruned |" in body and "Weight size on disk" in body and "Encoding speed (tokens/s)" in body
    assert f"({machine_description()}) by encoding the same 8 documents" in body  # the machine and the sample
    assert "![L3Prune curve" in body and "(l3prune.png)" in body
    assert (card_run["output"] / "models" / "tiny-qwen2-l3prune-three" / "l3prune.png").is_file()
    for row in (
        "| Steps | 2 |",
        "| Batch size | 4 |",
        "| Learning rate | 0.0002 |",
        "| Warm-up steps | 0 |",
        "| Seed | 42 |",
        "r=16, alpha=32, dropout=0.05",
    ):
        assert row in body, row
    assert "Training time:" in body and "Hardware:" in body and "8 triplets" in body
    assert re.search(
        r"- Budget: 2 steps × 4 triplets × at most \d+ tokens per text: 8 triplets seen, 1\.00 passes "
        r"over the 8\.",
        body,
    )
    assert json.loads((card_run["output"] / "work" / "three" / "train.json").read_text())["processes"] == 1
    assert "| CatSTS | STS |" in body and "**Average (1 task)**" in body
    assert 'model = SentenceTransformer("st-prune-test/tiny-qwen2-l3prune-three")' in body
    assert "model.encode_query(" in body and "model.encode_document(" in body
    assert '"Given a question, retrieve passages that answer it →"' in body  # as written, not "\\u2192"
    assert PAPER_CITATION in body
    assert "Keep the licence notice." in body and "`apache-2.0`" in body


def test_card_leaks_no_local_path_token_or_placeholder(card_run):
    readme = card_run["readme"]
    assert str(card_run["folder"]) not in readme and "/tmp/" not in readme
    assert "{{" not in readme and "TODO" not in readme and "hf_" not in readme
    assert "None" not in split_card(readme)[1]


def test_exported_model_saves_the_query_prompt(card_run):
    config = json.loads(
        (card_run["output"] / "models" / "tiny-qwen2-l3prune-three" / "config_sentence_transformers.json").read_text()
    )
    assert config["prompts"]["query"] == "Given a question, retrieve passages that answer it →"


def test_render_card_refuses_a_local_path_in_any_field(card_run):
    from st_prune.card.render import card_context

    runner = card_run["runner"]
    variant = runner.recipe.variants[0]
    context = card_context(runner.recipe, variant, **card_inputs(runner.ctx, variant))
    context["training"]["data"] = str(card_run["folder"] / "data.jsonl")
    with pytest.raises(StPruneError, match="path"):
        render_card(context, extra_forbidden=(str(card_run["folder"]),))


def test_zoo_readme_table(card_run):
    rows = json.loads((card_run["output"] / "models" / "zoo.json").read_text())
    assert {row["variant"] for row in rows} == {"three", "small"}
    readme = render_zoo_readme(rows)
    assert "| Model | Base | Layers | Parameters | Score |" in readme
    assert "| st-prune-test/tiny-qwen2-l3prune-three | st-prune-test/tiny-qwen2 | 3/4 |" in readme
    assert "| local |" in readme  # not published
