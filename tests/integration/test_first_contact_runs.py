"""A new user's first runs on a tiny model: recipe paths, base layers, the per-stage summary, memory between stages."""

from __future__ import annotations

import pytest
from recipe_files import write_recipe
from tiny_models import make_tiny_llm

from st_prune.errors import StPruneError
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.runner import RecipeRunner


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, tiny_model, monkeypatch):
    own = write_recipe(tmp_path, tiny_model, name="smollm2-135m-instruct-cpu")
    monkeypatch.chdir(tmp_path)
    assert load_recipe(own.name).base.model == str(tiny_model)


def test_base_layers_that_disagree_with_the_config_are_refused_before_work(tmp_path, tiny_model):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model), ["base.layers=9"])
    with pytest.raises(StPruneError, match=r"base.layers is 9 but .* has 4 decoder layers.*--set base.layers=4"):
        RecipeRunner(recipe, tmp_path / "run", log=lambda _: None).run()
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ the run's summary
def test_usage_table_is_printed_at_the_end(tmp_path, tiny_model):
    lines: list[str] = []
    recipe = load_recipe(write_recipe(tmp_path, tiny_model), ["training.steps=1"])
    RecipeRunner(recipe, tmp_path / "run", only="scan", log=lines.append).run()
    table = next(line for line in lines if line.startswith("stage"))
    assert "wall" in table and "peak memory" in table
    assert any(line.startswith("scan ") and line.rstrip().endswith("GB") for line in "\n".join(lines).splitlines())
    assert any(line.startswith("total") for line in "\n".join(lines).splitlines())


# ----------------------------------------------------------------------------- memory between stages (issue 14.5)
def test_each_stage_releases_its_model_before_the_next_loads_one(tmp_path, monkeypatch):
    import weakref

    from st_prune.pipeline.context import RunContext
    from st_prune.pipeline.recipe import load_recipe

    model_dir = make_tiny_llm(tmp_path / "tiny-llama", "llama", layers=4)
    path = write_recipe(tmp_path, model_dir, variants=[{"name": "small", "pick": "small"}])
    original, alive_at_load, loaded = RunContext.encoder, [], []

    def recording_encoder(self, *args, **kwargs):
        alive_at_load.append(sum(ref() is not None for ref in loaded))  # earlier stages' models still alive
        model = original(self, *args, **kwargs)
        loaded.append(weakref.ref(model))
        return model

    monkeypatch.setattr(RunContext, "encoder", recording_encoder)
    RecipeRunner(load_recipe(path), tmp_path / "run", log=lambda _: None).run()
    assert len(loaded) == 3  # scan, train, export
    assert alive_at_load == [0, 0, 0]
