"""Recipes on a tiny model: schema errors that need a model folder, the dry run, per-variant settings, and one full run
(`st-prune run --push-to-hub` against a fake Hub) whose outputs, resume and summary most tests read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hub_server import FakeHub  # noqa: E402
from recipe_files import write_recipe
from recipe_tokens import ORG, READ_TOKEN, WRITE_TOKEN
from tiny_models import make_tiny_bert  # noqa: E402

from st_prune import cli  # noqa: E402
from st_prune.errors import StPruneError  # noqa: E402
from st_prune.pipeline.recipe import load_recipe  # noqa: E402
from st_prune.pipeline.runner import RecipeRunner  # noqa: E402
from st_prune.pipeline.schema import parse_override  # noqa: E402
from st_prune.pipeline.stages import STAGES  # noqa: E402


# ------------------------------------------------------------------------------------------ schema
def test_unknown_key_is_an_error_naming_the_valid_keys(tmp_path, tiny_model):
    path = write_recipe(tmp_path, tiny_model, training__stepz=3)
    with pytest.raises(StPruneError) as error:
        load_recipe(path)
    message = str(error.value)
    assert "training.stepz" in message and "did you mean 'steps'" in message
    assert "valid keys: steps, batch_size, learning_rate" in message and "\n" not in message


def test_missing_required_key_is_an_error_naming_it(tmp_path, tiny_model):
    path = write_recipe(tmp_path, tiny_model)
    data = yaml.safe_load(path.read_text())
    del data["card"]["license"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StPruneError, match=r"lacks required key\(s\) card.license.*valid keys: license, language"):
        load_recipe(path)


def test_wrong_type_and_bad_variant_are_errors(tmp_path, tiny_model):
    with pytest.raises(StPruneError, match="'training.steps' must be an integer"):
        load_recipe(write_recipe(tmp_path, tiny_model, training={"steps": "many"}))
    with pytest.raises(StPruneError, match="exactly one of pick"):
        load_recipe(write_recipe(tmp_path, tiny_model, variants=[{"name": "x", "pick": "small", "layers": 2}]))
    with pytest.raises(StPruneError, match="use one of small, large"):
        load_recipe(write_recipe(tmp_path, tiny_model, variants=[{"name": "x", "pick": "medium"}]))


def test_set_overrides_are_typed_by_the_schema(tmp_path, tiny_model):
    path = write_recipe(tmp_path, tiny_model)
    recipe = load_recipe(
        path,
        [
            "training.steps=7",
            "data.path=123",
            "variants.0.layers=2",
            "variants.0.pick=",
            "training.lora.target_modules=[q_proj, v_proj]",
            "publish.private=true",
        ],
    )
    assert recipe.training.steps == 7 and recipe.data.path == "123" and recipe.publish.private is True
    assert (recipe.variants[0].layers, recipe.variants[0].pick) == (2, None)
    assert recipe.training.lora.target_modules == ["q_proj", "v_proj"]
    assert parse_override("scan.scale=20") == (["scan", "scale"], 20)
    with pytest.raises(StPruneError, match="unknown key; valid keys of training: steps"):
        load_recipe(path, ["training.nope=1"])
    with pytest.raises(StPruneError, match="must be an integer"):
        load_recipe(path, ["training.steps=lots"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model):
    """One full `st-prune run --push-to-hub` on the tiny model against a fake Hub; what it left behind."""
    folder = tmp_path_factory.mktemp("recipe")
    # `small` trains 4 steps of its own, `large` the recipe's 3.
    recipe_path = write_recipe(
        folder,
        tiny_model,
        variants=[{"name": "small", "pick": "small", "steps": 4}, {"name": "large", "pick": "large"}],
    )
    output = folder / "run"
    mp = pytest.MonkeyPatch()
    with FakeHub(tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"}) as hub:
        mp.setenv("HF_TOKEN", WRITE_TOKEN)
        mp.setenv("HF_ENDPOINT", hub.endpoint)
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        import huggingface_hub.hf_api

        # `huggingface_hub.model_info()` (no endpoint given) uses a client built at import: send it here as well.
        mp.setattr(huggingface_hub.hf_api.api, "endpoint", hub.endpoint)
        try:
            recipe = load_recipe(recipe_path)
            runner = RecipeRunner(recipe, output, push_to_hub=ORG, zoo_index=folder / "index", log=lambda _: None)
            summary = runner.run()
            markers = {path.name: path.stat().st_mtime_ns for path in (output / "stages").iterdir()}
            commits_before = {name: len(hub.commits(entry["repo_id"])) for name, entry in summary.items()}
            # Resume: a second run of the same recipe does no stage work at all.
            again = RecipeRunner(load_recipe(recipe_path), output, push_to_hub=ORG, log=lambda _: None)
            again.run()
            markers_after = {path.name: path.stat().st_mtime_ns for path in (output / "stages").iterdir()}
            from huggingface_hub import snapshot_download

            downloads = {
                name: Path(snapshot_download(entry["repo_id"], endpoint=hub.endpoint, cache_dir=folder / "hf-cache"))
                for name, entry in summary.items()
            }
            commits = {name: len(hub.commits(entry["repo_id"])) for name, entry in summary.items()}
        finally:
            mp.undo()
    return {
        "folder": folder,
        "output": output,
        "recipe_path": recipe_path,
        "runner": runner,
        "summary": summary,
        "first_calls": dict(runner.calls),
        "second_calls": dict(again.calls),
        "markers": markers,
        "markers_after": markers_after,
        "downloads": downloads,
        "commits": commits,
        "commits_before": commits_before,
        "requests": [f"{r.method} {r.path}" for r in hub.requests],
    }


# --------------------------------------------------------------------------- early, one-line errors
def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    status = cli.main(argv)
    return status, capsys.readouterr().err.strip()


def test_bad_inputs_fail_fast_with_one_line(tmp_path, tiny_model, capsys):
    recipe = write_recipe(tmp_path, tiny_model)
    output = str(tmp_path / "out")

    status, error = run_cli(["run", str(recipe), "--output", output, "--set", "data.path=nowhere.jsonl"], capsys)
    assert status == 2 and "data.path nowhere.jsonl does not exist" in error and "--set data.path=" in error
    assert len(error.splitlines()) == 1

    status, error = run_cli(
        ["run", str(recipe), "--output", output, "--set", "variants.0.layers=9", "--set", "variants.0.pick="], capsys
    )
    assert status == 2 and "keeps 9 layers but" in error and "K <= 4" in error

    bert = make_tiny_bert(tmp_path / "bert")
    status, error = run_cli(["run", str(recipe), "--output", output, "--set", f"base.model={bert}"], capsys)
    assert status == 2 and "encoder-only" in error

    status, error = run_cli(["run", str(tmp_path / "missing.yaml")], capsys)
    assert status == 2 and "does not exist" in error
    assert not Path(output).exists()  # nothing was started


def test_output_holding_another_recipes_run_is_refused(tmp_path, tiny_model, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "run.json").write_text(json.dumps({"recipe": "other-recipe", "hash": "x"}))
    status, error = run_cli(["run", str(write_recipe(tmp_path, tiny_model)), "--output", str(output)], capsys)
    assert status == 2 and "holds a run of recipe 'other-recipe'" in error and "another --output" in error


def test_read_only_token_is_refused_before_work(tmp_path, tiny_model, monkeypatch, capsys):
    output = tmp_path / "out"
    with FakeHub(tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
        status, error = run_cli(
            ["run", str(write_recipe(tmp_path, tiny_model)), "--output", str(output), "--push-to-hub", ORG], capsys
        )
        assert status == 2 and "read-only" in error and "write token" in error
        assert READ_TOKEN not in error
        monkeypatch.setenv("HF_TOKEN", "hf_NotAValidTokenAtAll0000000000")
        status, error = run_cli(
            ["run", str(write_recipe(tmp_path, tiny_model)), "--output", str(output), "--push-to-hub", ORG], capsys
        )
        assert status == 2 and "hf_NotAValid" not in error and len(error.splitlines()) == 1
    assert not (output / "stages").exists()


def test_dry_run_prints_the_plan_and_does_nothing(tmp_path, tiny_model, capsys):
    output = tmp_path / "out"
    status = cli.main(
        [
            "run",
            str(write_recipe(tmp_path, tiny_model)),
            "--output",
            str(output),
            "--dry-run",
            "--set",
            "training.steps=5",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0 and not output.exists()
    assert "steps: 5" in printed
    for stage in STAGES[:-1]:
        assert f"  {stage}" in printed
    assert "train     [small: small, 5 steps] (to run)" in printed and "publish   (off" in printed


def test_a_variant_can_train_its_own_number_of_steps(tmp_path, tiny_model, capsys):
    variants = [{"name": "small", "pick": "small", "steps": 40}, {"name": "large", "pick": "large"}]
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, variants=variants))
    assert [recipe.training_for(v).steps for v in recipe.variants] == [40, 3]
    assert recipe.training.steps == 3  # the shared section is not changed
    status = cli.main(
        [
            "run",
            str(tmp_path / "recipe.yaml"),
            "--output",
            str(tmp_path / "out"),
            "--dry-run",
            "--set",
            "variants.0.steps=0",
        ]
    )
    assert status == 2
    assert "variants.0.steps must be at least 1, got 0" in capsys.readouterr().err


def test_a_variant_can_train_at_its_own_learning_rate(tmp_path, tiny_model, capsys):
    from st_prune.pipeline.stages.train import TRAIN

    variants = [{"name": "small", "pick": "small"}, {"name": "large", "pick": "large"}]
    plain = load_recipe(write_recipe(tmp_path, tiny_model, variants=variants))
    variants[0]["learning_rate"] = 2e-3
    own = load_recipe(write_recipe(tmp_path, tiny_model, variants=variants))
    assert [own.training_for(v).learning_rate for v in own.variants] == [2e-3, plain.training.learning_rate]
    assert own.training.learning_rate == plain.training.learning_rate  # the shared section is not changed
    # Only the variant with its own rate retrains; the digest of a recipe without one is as before the field.
    assert TRAIN.key(own, own.variants[0], 2) != TRAIN.key(plain, plain.variants[0], 2)
    assert TRAIN.key(own, own.variants[1], 2) == TRAIN.key(plain, plain.variants[1], 2)
    assert own.digest() != plain.digest()
    status = cli.main(["run", str(tmp_path / "recipe.yaml"), "--output", str(tmp_path / "out"), "--dry-run"])
    assert status == 0 and "[small: small, 3 steps, lr 0.002]" in capsys.readouterr().out
    status = cli.main(
        [
            "run",
            str(tmp_path / "recipe.yaml"),
            "--output",
            str(tmp_path / "out"),
            "--dry-run",
            "--set",
            "variants.1.learning_rate=0",
        ]
    )
    assert status == 2 and "variants.1.learning_rate must be" in capsys.readouterr().err


def test_source_is_not_a_recipe_key(tmp_path, tiny_model):
    path = write_recipe(tmp_path, tiny_model, source="/somewhere/else.yaml")
    with pytest.raises(StPruneError, match="unknown key 'source' in recipe; valid keys: name, base"):
        load_recipe(path)
    assert load_recipe(write_recipe(tmp_path, tiny_model)).source == str(tmp_path / "recipe.yaml")


# ------------------------------------------------------------------------------------- the full run
def test_full_run_produces_both_variants_and_stage_files(finished_run):
    output, summary = finished_run["output"], finished_run["summary"]
    scan = json.loads((output / "scan" / "scan.json").read_text())
    assert len(scan["losses"]) == 4 and 1 <= scan["small"] <= 2 < scan["large"] <= 4
    assert (output / "scan" / "l3prune.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["small"]["layers"] == scan["small"] and summary["large"]["layers"] == scan["large"]
    for variant in ("small", "large"):
        train = json.loads((output / "work" / variant / "train.json").read_text())
        assert train["steps"] == train["settings"]["steps"] == {"small": 4, "large": 3}[variant]
        assert (output / "work" / variant / "adapter" / "adapter_config.json").is_file()
        assert summary[variant]["repo_id"] == f"{ORG}/tiny-llama-l3prune-{variant}"
        assert "TinySTS" in json.loads((output / "work" / variant / "eval.json").read_text())["scores"]
    optional = ("trim", "deploy")  # this recipe has neither section: those stages do not run
    assert finished_run["first_calls"] == {
        stage: (1 if stage == "scan" else 2) for stage in STAGES if stage not in optional
    }


def test_scan_json_and_cards_say_how_sure_each_pick_is(finished_run):
    # The bootstrap over the scan's batches (tests/unit/test_pick_confidence.py) reaches scan.json and every card.
    scan = json.loads((finished_run["output"] / "scan" / "scan.json").read_text())
    confidence = scan["pick_confidence"]
    assert (confidence["batches"], confidence["resamples"], confidence["seed"]) == (2, 1000, 42)
    assert len(scan["batch_losses"]) == 2
    phrases = []
    for pick in ("small", "large"):
        entry = confidence[pick]
        assert entry["depth"] == scan[pick] and 0 < entry["share"] <= 1
        assert entry["runner_up"] == {"small": 3, "large": 7}[pick] - scan[pick]  # the other depth of its half (L=4)
        layers = "layer" if scan[pick] == 1 else "layers"
        phrases.append(f"*{pick}* is {scan[pick]} {layers} in {100 * entry['share']:.0f} % of the resamples")
    for entry in finished_run["summary"].values():
        card = (Path(entry["folder"]) / "README.md").read_text()
        assert "resampling the scan's 2 batches with replacement 1000 times" in card
        assert all(phrase in card for phrase in phrases), card


def test_resume_runs_no_stage_again(finished_run):
    assert finished_run["second_calls"] == {}
    assert finished_run["markers_after"] == finished_run["markers"]
    assert finished_run["commits"] == finished_run["commits_before"]  # nothing re-published


def test_only_one_stage_reruns_when_its_marker_is_gone(finished_run):
    output = finished_run["output"]
    (output / "stages" / "card.small.json").unlink()
    runner = RecipeRunner(
        load_recipe(finished_run["recipe_path"]), output, push_to_hub=ORG, only="card", log=lambda _: None
    )
    runner.run()
    assert runner.calls == {"card": 1}
    assert (output / "stages" / "card.small.json").is_file()


def test_only_a_stage_after_a_scan_of_other_settings_is_refused(finished_run, tmp_path, capsys):
    # A new scan setting makes the saved scan stale: --only evaluate used to say "done earlier" for every variant.
    run = tmp_path / "run"
    shutil.copytree(finished_run["output"], run)
    markers = sorted((path.name, path.read_bytes()) for path in (run / "stages").iterdir())
    assert (
        cli.main(
            [
                "run",
                str(finished_run["recipe_path"]),
                "--output",
                str(run),
                "--only",
                "evaluate",
                "--set",
                "scan.seed=7",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "--only evaluate: the scan in" in error and "was made with other settings" in error
    assert "run --only scan first, or run without --only" in error and len(error.splitlines()) == 1
    assert sorted((path.name, path.read_bytes()) for path in (run / "stages").iterdir()) == markers


def test_no_local_folder_name_reaches_the_hub(finished_run, tiny_model):
    # The base model lives in <tmp>/base0/tiny-llama; sentence-transformers' card code used to ask the Hub for
    # "base0/tiny-llama" (with the token) while exporting.
    local_names = {tiny_model.parent.name, finished_run["folder"].name, finished_run["output"].name}
    assert any(request.startswith("POST /api/models/") for request in finished_run["requests"])  # it did publish
    assert [r for r in finished_run["requests"] if any(f"/{name}/" in r + "/" for name in local_names)] == []


def test_published_model_loads_with_plain_sentence_transformers(finished_run, tmp_path):
    script = (
        "import sys, json\n"
        "sys.modules['st_prune'] = None\n"
        "from sentence_transformers import SentenceTransformer\n"
        "m = SentenceTransformer(sys.argv[1], trust_remote_code=False)\n"
        "q = m.encode_query(['the cat and dog'])\n"
        "d = m.encode_document(['a cat with a dog', 'the sun on the road'])\n"
        "print(json.dumps({'shape': list(q.shape), 'prompts': m.prompts, 'sim': m.similarity(q, d).tolist(),\n"
        "                  'parameters': sum(p.numel() for p in m.parameters())}))\n"
    )
    for variant, folder in finished_run["downloads"].items():
        assert (folder / "README.md").is_file() and (folder / "l3prune.png").is_file()
        result = subprocess.run(
            [sys.executable, "-c", script, str(folder)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
            cwd="/",
        )
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["shape"] == [1, 32]
        assert report["prompts"]["query"].endswith(" →")
        recorded = json.loads((finished_run["output"] / "work" / variant / "prune.json").read_text())
        assert report["parameters"] == recorded["parameters"] <= recorded["parameters_full"]
        assert variant != "small" or recorded["parameters"] < recorded["parameters_full"]


def test_zoo_index_lists_every_variant(finished_run):
    for index in (finished_run["output"] / "models", finished_run["folder"] / "index"):
        rows = json.loads((index / "zoo.json").read_text())
        assert {row["repo_id"] for row in rows} == {
            f"{ORG}/tiny-llama-l3prune-small",
            f"{ORG}/tiny-llama-l3prune-large",
        }
        readme = (index / "README.md").read_text()
        assert f"| {ORG}/tiny-llama-l3prune-small | st-prune-test/tiny-llama |" in readme and "[Hub](" in readme


# ------------------------------------------------------------------ output layout and per-stage summary
def test_models_land_in_models_named_by_repo_and_the_index_beside_them(finished_run):
    output = finished_run["output"]
    for entry in finished_run["summary"].values():
        folder = Path(entry["folder"])
        assert folder.parent == output / "models" and (folder / "modules.json").is_file()
    assert (output / "models" / "zoo.json").is_file() and (output / "models" / "README.md").is_file()
    assert not (output / "zoo").exists()


def test_the_run_ends_with_a_per_stage_time_and_memory_summary(finished_run):
    # Other tests re-run single stages over this folder; a full re-run lists every stage, done earlier or not,
    # with the figures measured when it ran.
    RecipeRunner(load_recipe(finished_run["recipe_path"]), finished_run["output"], log=lambda _: None).run()
    summary = json.loads((finished_run["output"] / "summary.json").read_text())
    stages = {row["stage"] for row in summary["stages"]}
    assert {"scan", "train[small]", "train[large]", "export[small]", "evaluate[large]"} <= stages
    for row in summary["stages"]:
        assert row["seconds"] >= 0 and row["peak_rss_gb"] > 0.05, row  # torch alone holds >50 MB
    assert summary["peak_rss_gb"] >= max(row["peak_rss_gb"] for row in summary["stages"]) - 0.01
    marker = json.loads((finished_run["output"] / "stages" / "train.small.json").read_text())
    assert marker["peak_rss_gb"] > 0.05
