"""Post-export settings without a run: the held-out sample and the main job's backend files."""

from __future__ import annotations

import json

from st_prune.pipeline.recipe import load_recipe


def test_held_out_texts_are_a_seeded_sample_of_the_task_files_distinct_texts(tmp_path):
    from st_prune.pipeline.stages.deploy import held_out_texts

    sts, retrieval = tmp_path / "sts.jsonl", tmp_path / "retrieval.jsonl"
    sts.write_text(
        "".join(json.dumps({"sentence1": f"s{i}", "sentence2": "same", "score": 1.0}) + "\n" for i in range(50))
    )
    retrieval.write_text(json.dumps({"query": "q", "document": "d"}) + "\n\n")
    texts = held_out_texts([sts, retrieval], count=40)
    assert len(texts) == 40 and len(set(texts)) == 40
    assert texts == held_out_texts([sts, retrieval], count=40)  # the same every run
    assert set(held_out_texts([sts, retrieval], count=1000)) == {f"s{i}" for i in range(50)} | {"same", "q", "d"}
    assert held_out_texts([]) == []


def test_the_main_jobs_small_variant_ships_onnx_and_openvino_files():
    """README's main job (the shipped CPU recipe) must keep shipping backend files for `small`, int8 included."""
    from st_prune.pipeline.recipe import recipes_dir

    recipe = load_recipe(recipes_dir() / "smollm2-135m-instruct-cpu.yaml")
    small, large = recipe.variants
    assert recipe.deploys(small) and not recipe.deploys(large)
    assert set(recipe.deploy.backends) == {"onnx", "openvino"} and recipe.deploy.quantize == ["int8"]
