"""A changed recipe setting re-runs only the stages that depend on it (issue 14, item 6)."""

from __future__ import annotations

import json

import pytest
from recipe_files import write_recipe

from st_prune import cli
from st_prune.pipeline.recipe import load_recipe  # noqa: E402
from st_prune.pipeline.runner import RecipeRunner  # noqa: E402
from st_prune.pipeline.stages import BY_NAME  # noqa: E402

STAGES = ("prune", "train", "export", "evaluate", "card")


def keys(recipe, layers: int = 2) -> dict[str, str]:
    variant = recipe.variants[0]
    result = {"scan": BY_NAME["scan"].key(recipe)}
    result.update({stage: BY_NAME[stage].key(recipe, variant, layers, "folder") for stage in STAGES})
    return result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("keys")
    model = tiny_model
    return folder, write_recipe(folder, model, variants=[{"name": "small", "pick": "small"}])


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        ("training.learning_rate=0.0001", {"train", "export", "evaluate", "card"}),
        ("training.lora.r=4", {"train", "export", "evaluate", "card"}),
        ("evaluation.batch_size=3", {"evaluate", "card"}),
        ("card.license=mit", {"card"}),
        ("scan.num_batches=3", {"scan", *STAGES}),
        ("base.max_seq_length=16", {"scan", *STAGES}),
        ("publish.repo_name={base}-{variant}-x", set()),  # names only: the folder name is its own input
    ],
)
def test_a_setting_changes_the_keys_of_the_stages_downstream_of_it_only(tiny, override, changed):
    _, path = tiny
    before, after = keys(load_recipe(path)), keys(load_recipe(path, [override]))
    assert {stage for stage in before if before[stage] != after[stage]} == changed


def test_a_new_learning_rate_retrains_and_keeps_the_scan(tiny, capsys):
    folder, path = tiny
    output = folder / "run"
    RecipeRunner(load_recipe(path), output, log=lambda _: None).run()
    scan_marker = (output / "stages" / "scan.json").read_text()

    # --dry-run says what will run again, before any work
    assert (
        cli.main(["run", str(path), "--output", str(output), "--dry-run", "--set", "training.learning_rate=0.0001"])
        == 0
    )
    plan = capsys.readouterr().out
    assert "  scan      (done, skipped)" in plan and "  prune     [small: small] (done, skipped)" in plan
    assert "  train     [small: small, 3 steps] (to run)" in plan and "  evaluate  [small: small] (to run)" in plan

    again = RecipeRunner(load_recipe(path, ["training.learning_rate=0.0001"]), output, log=lambda _: None)
    again.run()
    assert again.calls == {"train": 1, "export": 1, "evaluate": 1, "card": 1}
    assert (output / "stages" / "scan.json").read_text() == scan_marker
    train = json.loads((output / "work" / "small" / "train.json").read_text())
    assert train["settings"]["learning_rate"] == 0.0001
    # and the same settings again redo nothing
    third = RecipeRunner(load_recipe(path, ["training.learning_rate=0.0001"]), output, log=lambda _: None)
    third.run()
    assert third.calls == {}
