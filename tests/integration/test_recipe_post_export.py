"""The recipe's optional `trim` and `deploy` stages: a zoo variant ships with a trimmed vocabulary and ONNX/OpenVINO
files, its card and the zoo index describe the folder as shipped, and a variant left out is untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
from plain_st import encode_in_plain_process  # noqa: E402
from recipe_files import write_recipe

from st_prune import cli  # noqa: E402
from st_prune.pipeline.recipe import load_recipe  # noqa: E402
from st_prune.pipeline.runner import RecipeRunner  # noqa: E402

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def post_export_run(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("post-export")
    model = tiny_model
    path = write_recipe(
        folder,
        model,
        trim={"variants": ["small"]},
        deploy={"backends": ["onnx", "openvino"], "variants": ["small"]},
    )
    runner = RecipeRunner(load_recipe(path), folder / "run", zoo_index=folder / "index", log=lambda _: None)
    runner.run()
    again = RecipeRunner(load_recipe(path), folder / "run", log=lambda _: None)
    again.run()
    return {"folder": folder, "runner": runner, "again": again, "recipe": path}


def test_small_ships_trimmed_with_backend_files_and_large_is_untouched(post_export_run):
    runner = post_export_run["runner"]
    small, large = (runner.ctx.zoo_dir(variant) for variant in runner.recipe.variants)
    trim = json.loads((small / "trim.json").read_text())
    assert trim["vocab_after"] < trim["vocab_before"]
    assert json.loads((small / "config.json").read_text())["vocab_size"] == trim["vocab_after"]
    for name in ("onnx/model.onnx", "openvino/openvino_model.xml", "deploy.json"):
        assert (small / name).is_file(), name
    assert not (large / "trim.json").exists() and not (large / "onnx").exists()
    assert runner.calls.get("trim") == 1 and runner.calls.get("deploy") == 1
    assert post_export_run["again"].calls == {}  # a re-run redoes nothing


def test_card_and_zoo_index_describe_the_folder_as_shipped(post_export_run):
    runner = post_export_run["runner"]
    small = runner.ctx.zoo_dir(runner.recipe.variants[0])
    card = (small / "README.md").read_text()
    trim = json.loads((small / "trim.json").read_text())
    assert (
        "## Vocabulary trimmed" in card and f"| tokens | {trim['vocab_before']:,} | {trim['vocab_after']:,} |" in card
    )
    assert "## Faster on CPU: ONNX and OpenVINO" in card
    repo_id = runner.ctx.repo_id(runner.recipe.variants[0])
    assert f'`SentenceTransformer("{repo_id}", backend="onnx")`' in card
    assert f"| {trim['parameters_after']:,} |" in card
    index = {row["variant"]: row for row in json.loads((post_export_run["folder"] / "index" / "zoo.json").read_text())}
    assert index["small"]["parameters"] == trim["parameters_after"] < index["large"]["parameters"]
    deploy = json.loads((runner.folder.work(runner.recipe.variants[0].name) / "deploy.json").read_text())
    assert deploy["speed"]["torch"]["speedup"] == 1.0 and deploy["speed"]["onnx/model.onnx"]["texts_per_second"] > 0
    # The files were checked on the evaluation task's dev sentences (24 distinct ones), not the training texts.
    assert deploy["checked_on"]["source"] == "held-out dev texts of the evaluation tasks"
    assert deploy["checked_on"]["texts"] == 24
    assert "on 24 held-out dev texts of the evaluation tasks (with each prompt and without)" in " ".join(card.split())
    assert "torch embeddings on 24 held-out dev texts" in card.replace("\n", " ")  # not "embeddingson"


def test_trimmed_variant_loads_with_plain_sentence_transformers_and_onnx_agrees(post_export_run, tmp_path):
    from st_prune.deploy.runtime import encode_with_graph, onnx_runner
    from st_prune.util.local_only import load_model_folder

    runner = post_export_run["runner"]
    small = runner.ctx.zoo_dir(runner.recipe.variants[0])
    texts = ["the cat and dog", "a bank with money"]  # words of the training data: kept tokens only
    plain, _ = encode_in_plain_process(small, texts, tmp_path)
    model = load_model_folder(small)
    assert np.allclose(plain, model.encode(texts), atol=1e-5)
    untrimmed = load_model_folder(runner.ctx.export_dir(runner.recipe.variants[0]))
    assert np.allclose(plain, untrimmed.encode(texts), atol=1e-5)  # exact on texts of kept tokens
    assert np.allclose(encode_with_graph(model, onnx_runner(small / "onnx/model.onnx"), texts), plain, atol=1e-4)


def test_recipe_trim_and_deploy_sections_are_checked_up_front(tmp_path, capsys, tiny_model):
    model = tiny_model
    bad = [
        ({"trim": {"variants": ["tiny"]}}, "trim.variants names 'tiny', not a variant of this recipe"),
        ({"trim": {"vocab_size": 10, "min_frequency": 2}}, "give vocab_size or min_frequency, not both"),
        ({"trim": {"vocab_size": 0}}, "trim.vocab_size must be at least 1"),
        ({"deploy": {"backends": []}}, "deploy.backends is empty"),
        ({"deploy": {"backends": ["tensorrt"]}}, "use one of onnx, openvino"),
    ]
    for changes, message in bad:
        path = write_recipe(tmp_path, model, **changes)
        status = cli.main(["run", str(path), "--output", str(tmp_path / "out"), "--dry-run"])
        assert status == 2 and message in capsys.readouterr().err, message
    assert not (tmp_path / "out").exists()


def test_deploy_without_its_runtimes_is_refused_before_the_scan(tmp_path, capsys, monkeypatch, tiny_model):
    import st_prune.deploy.deploy

    model = tiny_model
    path = write_recipe(tmp_path, model, deploy={"backends": ["openvino"]})
    monkeypatch.setattr(st_prune.deploy.deploy, "_importable", lambda name: name != "openvino")
    status = cli.main(["run", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "deploy needs openvino" in err and "pip install" in err
    assert not (tmp_path / "out" / "scan").exists()
