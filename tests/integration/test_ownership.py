"""st-prune replaces or removes only what it wrote (issue 23 "Data loss"): the record itself, then each case.

Cases: 1 the zoo index, 2 train's work folder, 3 scan's files, 4 --overwrite of an export and of deploy, 7 a killed
deploy's staging folder (case 5, submit, is in test_evaluation.py beside its fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_errors import assert_one_line as refused
from cli_errors import run_cli
from ownership_files import REPO, snapshot

from st_prune.errors import StPruneError
from st_prune.util import ownership
from st_prune.util.staging import new_staging_dir


def staged(tmp_path: Path, destination: Path, files: dict[str, str]) -> Path:
    staging = new_staging_dir(destination)
    for name, text in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    return staging


# ================================================================================================ the record
def test_a_written_file_is_ours_until_edited_and_a_copy_with_a_new_time_still_is(tmp_path):
    ownership.write_text(tmp_path, "scan.json", '{"losses": [1]}', by="scan", fix="x")
    assert ownership.owner(tmp_path, "scan.json") == "scan"
    os.utime(tmp_path / "scan.json", ns=(1, 1))  # e.g. copied without -p: same bytes, another time
    assert ownership.owner(tmp_path, "scan.json") == "scan"
    (tmp_path / "scan.json").write_text('{"losses": [2]}')  # the same size, other content
    assert ownership.owner(tmp_path, "scan.json") is None
    (tmp_path / "mine.txt").write_text("mine")
    assert ownership.owner(tmp_path, "mine.txt") is None
    assert ownership.foreign(tmp_path) == ["mine.txt", "scan.json"]

    (tmp_path / "link.json").symlink_to(tmp_path / "mine.txt")  # a link where st-prune's file was is not st-prune's
    ownership.record(tmp_path, ["link.json"], by="scan")
    assert ownership.owner(tmp_path, "link.json") is None


def test_check_replace_allows_only_st_prunes_own_unchanged_files(tmp_path):
    fix = "choose another --output"
    ownership.check_replace(tmp_path, "absent.json", by="scan", fix=fix)  # nothing there: fine
    (tmp_path / "essay.txt").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(
            StPruneError,
            match=r"essay.txt exists and was not written by st-prune, so it is never "
            r"replaced; choose another --output",
        ):
            ownership.check_replace(tmp_path, "essay.txt", by="scan", overwrite=overwrite, fix=fix)

    ownership.write_text(tmp_path, "README.md", "card", by="export", fix=fix)
    ownership.check_replace(tmp_path, "README.md", by="export", fix=fix)  # a re-run of the same writer
    with pytest.raises(StPruneError, match="written by st-prune export, not zoo index"):
        ownership.check_replace(tmp_path, "README.md", by="zoo index", fix=fix)
    ownership.check_replace(tmp_path, "README.md", by="card", overwrite=True, fix=fix)
    (tmp_path / "README.md").write_text("card, edited")
    with pytest.raises(StPruneError, match="was changed since st-prune wrote it"):
        ownership.check_replace(tmp_path, "README.md", by="export", overwrite=True, fix=fix)


def test_a_damaged_record_makes_nothing_ours(tmp_path):
    ownership.write_text(tmp_path, "scan.json", "{}", by="scan", fix="x")
    (tmp_path / ownership.MANIFEST).write_text("{not json")
    assert ownership.owner(tmp_path, "scan.json") is None
    with pytest.raises(StPruneError, match="not written by st-prune"):
        ownership.write_text(tmp_path, "scan.json", "{}", by="scan", fix="x")


def test_install_replaces_st_prunes_files_keeps_the_users_and_refuses_a_collision_untouched(tmp_path):
    destination = tmp_path / "model"
    ownership.install(
        staged(tmp_path, destination, {"modules.json": "[1]", "1_Pooling/config.json": "{}", "old.bin": "earlier"}),
        destination,
        by="export",
        fix="x",
    )
    assert sorted(ownership.read_record(destination)["files"]) == ["1_Pooling/config.json", "modules.json", "old.bin"]
    assert ownership.read_record(destination)["dirs"] == ["1_Pooling"]
    (destination / "MY_NOTES.txt").write_text("notes")
    (destination / "my_experiments").mkdir()
    (destination / "my_experiments" / "run1.txt").write_text("results")
    (destination / "1_Pooling" / "mine.txt").write_text("in st-prune's folder")

    ownership.install(
        staged(tmp_path, destination, {"modules.json": "[2]"}), destination, by="export", clear=("",), fix="x"
    )
    assert (destination / "modules.json").read_text() == "[2]"
    assert not (destination / "old.bin").exists() and not (destination / "1_Pooling" / "config.json").exists()
    assert (destination / "MY_NOTES.txt").read_text() == "notes"
    assert (destination / "my_experiments" / "run1.txt").read_text() == "results"
    assert (destination / "1_Pooling" / "mine.txt").read_text() == "in st-prune's folder"  # its folder stays too
    assert ownership.foreign(destination) == ["1_Pooling/mine.txt", "MY_NOTES.txt", "my_experiments/run1.txt"]

    before = snapshot(destination)
    staging = staged(tmp_path, destination, {"modules.json": "[3]", "MY_NOTES.txt": "st-prune's notes"})
    with pytest.raises(StPruneError, match="MY_NOTES.txt exists and was not written by st-prune"):
        ownership.install(staging, destination, by="export", clear=("",), fix="x")
    assert snapshot(destination) == before  # nothing touched, st-prune's modules.json included


def test_remove_owned_removes_what_st_prune_wrote_and_the_folder_only_once_empty(tmp_path):
    work = ownership.make_folder(tmp_path / "o.work", by="train")
    ownership.write_text(work, "run.json", "{}", by="train", fix="x")
    (work / "checkpoint-1").mkdir()
    (work / "checkpoint-1" / "state.json").write_text("{}")
    ownership.record_tree(work, "checkpoint-1", by="train", digest=False)
    (work / "mine.txt").write_text("mine")
    assert ownership.remove_owned(work, root=True) == ["mine.txt"]
    assert sorted(path.name for path in work.iterdir()) == [ownership.MANIFEST, "mine.txt"]
    assert ownership.read_record(work) == {"files": {}, "dirs": ["."]}  # still says st-prune made the folder
    (work / "mine.txt").unlink()
    assert ownership.remove_owned(work, root=True) == [] and not work.exists()
    pre_existing = tmp_path / "empty-by-the-user"
    pre_existing.mkdir()
    ownership.make_folder(pre_existing, by="train")  # existed already: not st-prune's to remove
    ownership.write_text(pre_existing, "run.json", "{}", by="train", fix="x")
    assert ownership.remove_owned(pre_existing, root=True) == []
    assert pre_existing.is_dir() and not any(pre_existing.iterdir())


def test_publish_leaves_out_staging_folders_and_the_record(tmp_path):
    from st_prune.hub.publish import scan_folder
    from st_prune.pipeline.stages.publish import folder_digest

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    digest = folder_digest(folder)
    for staging in (".deploy-staging-ab12cd34", ".onnx.st-prune-staging-x1y2z3"):
        (folder / staging / "onnx").mkdir(parents=True)
        (folder / staging / "onnx" / "model.onnx").write_bytes(b"391 MB")
    ownership.record(folder, ["modules.json"], by="export")
    assert sorted(scan_folder(folder)) == ["modules.json"]
    assert folder_digest(folder) == digest  # the publish stage's key: no re-publish for the record


def test_an_older_zoo_index_is_recognised_by_its_exact_render_and_an_edit_is_refused(tmp_path):
    from st_prune.pipeline.stages.zoo_index import update_zoo_index

    folder = tmp_path / "model_cards"
    folder.mkdir()
    for name in ("zoo.json", "README.md"):  # the repository's own index, written before the record existed
        shutil.copyfile(REPO / "model_cards" / name, folder / name)
    rows = json.loads((folder / "zoo.json").read_text())
    entry = {**rows[0], "recipe": "another", "repo_id": "org/another"}
    update_zoo_index(folder, [entry])
    assert len(json.loads((folder / "zoo.json").read_text())) == len(rows) + 1
    assert "org/another" in (folder / "README.md").read_text()

    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nMy own remark.\n")
    with pytest.raises(StPruneError, match="README.md exists and was changed since st-prune wrote it"):
        update_zoo_index(folder, [entry])
    assert (folder / "README.md").read_text().endswith("My own remark.\n")


# ================================================================================================ the cases
@pytest.fixture
def triplets(tmp_path) -> Path:
    path = tmp_path / "data" / "mydata.jsonl"
    path.parent.mkdir()
    words = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field", "sun", "road", "debian", "package"]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "anchor": f"the {w} runs",
                    "positive": f"a {w} is running",
                    "negative": f"the {words[(i + 5) % 12]} sleeps",
                }
            )
            + "\n"
            for i, w in enumerate(words * 2)
        )
    )
    return path


def test_case1_zoo_index_never_replaces_a_readme_or_zoo_json_it_did_not_write(tiny_llm, tmp_path, capsys):
    from recipe_files import write_recipe

    recipe = write_recipe(tmp_path, tiny_llm())
    index = tmp_path / "project"
    index.mkdir()
    (index / "README.md").write_text("# My project\n")
    status, err = run_cli(["run", recipe, "--output", tmp_path / "run", "--zoo-index", index], capsys)
    refused(
        status,
        err,
        f"{index / 'README.md'} exists and was not written by st-prune, so it is never replaced; "
        "choose another --zoo-index folder or move README.md away",
    )
    assert (index / "README.md").read_text() == "# My project\n" and not (tmp_path / "run").exists()

    (index / "README.md").unlink()
    (index / "zoo.json").write_text('{"my": "data"}')  # was a TypeError traceback
    status, err = run_cli(["run", recipe, "--output", tmp_path / "run", "--zoo-index", index], capsys)
    refused(status, err, "zoo.json exists and was not written by st-prune", "move zoo.json away")
    assert snapshot(index) == {"zoo.json": b'{"my": "data"}'} and not (tmp_path / "run").exists()


def test_case2_train_never_uses_or_deletes_a_work_folder_it_did_not_write(tiny_llm, triplets, tmp_path, capsys):
    work = tmp_path / "o" / "usr.work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"], ["--keep-checkpoints"]):
        status, err = run_cli(
            [
                "train",
                tiny_llm(),
                "--data",
                triplets,
                "--layers",
                "2",
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--output",
                tmp_path / "o" / "usr",
                *extra,
            ],
            capsys,
        )
        refused(
            status,
            err,
            f"{work} holds files st-prune did not write (notes.txt); st-prune train keeps its "
            "checkpoints in that folder beside --output and removes it when done: move it away or "
            "choose another --output",
        )
    assert snapshot(tmp_path / "o") == {"usr.work": None, "usr.work/notes.txt": b"mine"}


def test_train_cleans_up_only_its_own_files_in_an_older_work_folder_it_resumes(tiny_llm, triplets, tmp_path, capsys):
    output = tmp_path / "o"
    argv = [
        "train",
        tiny_llm(),
        "--data",
        triplets,
        "--layers",
        "2",
        "--batch-size",
        "4",
        "--save-steps",
        "1",
        "--output",
        output,
    ]
    assert run_cli([*argv, "--max-steps", "2", "--keep-checkpoints"], capsys)[0] == 0
    work = tmp_path / "o.work"
    assert {"checkpoint-1/st_prune_checkpoint.json", "run.json"} <= set(ownership.read_record(work)["files"])
    # As an st-prune from before the record left it: no record, the export gone; and a file of the user's beside.
    (work / ownership.MANIFEST).unlink()
    shutil.rmtree(output)
    (work / "my-notes.txt").write_text("mine")
    assert run_cli([*argv, "--max-steps", "3", "--resume"], capsys)[0] == 0
    assert snapshot(work) == {"my-notes.txt": b"mine"}  # checkpoints and run.json gone, the note kept
    assert (output / "modules.json").is_file()


def test_case3_scan_never_overwrites_its_data_or_a_users_file(tiny_llm, triplets, tmp_path, capsys):
    scan = ["scan", tiny_llm(), "--data", triplets, "--batch-size", "4", "--num-batches", "1"]
    before = triplets.read_bytes()
    status, err = run_cli([*scan, "--output", triplets], capsys)
    refused(
        status,
        err,
        f"--output {triplets} is the --data file, which the scan would overwrite; choose another "
        "--output, e.g. --output scan.json",
    )
    in_folder = ["scan", tiny_llm(), "--data", triplets.parent, "--output", triplets.parent / "scan.json"]
    refused(*run_cli(in_folder, capsys), "is inside the --data folder")  # the next run would read it as data
    assert triplets.read_bytes() == before and sorted(p.name for p in triplets.parent.iterdir()) == ["mydata.jsonl"]

    (tmp_path / "essay.txt").write_text("years of work")
    (tmp_path / "photo.png").write_bytes(b"my holiday")
    status, err = run_cli([*scan, "--output", tmp_path / "essay.txt", "--plot", tmp_path / "photo.png"], capsys)
    refused(
        status,
        err,
        f"{tmp_path / 'essay.txt'} exists and was not written by st-prune, so it is never "
        "replaced; choose another --output or move that file away",
    )
    status, err = run_cli([*scan, "--output", tmp_path / "new.json", "--plot", tmp_path / "photo.png"], capsys)
    refused(status, err, "photo.png exists and was not written by st-prune", "choose another --plot")
    assert (tmp_path / "essay.txt").read_text() == "years of work"
    assert (tmp_path / "photo.png").read_bytes() == b"my holiday" and not (tmp_path / "new.json").exists()

    # Its own files: a re-run replaces them.
    out = tmp_path / "out"
    assert run_cli([*scan, "--output", out / "scan.json"], capsys)[0] == 0
    assert run_cli([*scan, "--output", out / "scan.json", "--seed", "7"], capsys)[0] == 0
    assert json.loads((out / "scan.json").read_text())["seed"] == 7
    assert ownership.owner(out, "scan.png") == "scan"


def test_case4_overwrite_replaces_only_the_export_st_prune_wrote(tiny_llm, tmp_path, capsys):
    from st_prune import encoder_from_llm, export_model

    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    folder = export_model(model, tmp_path / "exp")
    (folder / "MY_NOTES.txt").write_text("notes")
    (folder / "my_experiments").mkdir()
    (folder / "my_experiments" / "run1.txt").write_text("results")
    export_model(model, folder, overwrite=True)
    assert (folder / "MY_NOTES.txt").read_text() == "notes"
    assert (folder / "my_experiments" / "run1.txt").read_text() == "results"
    assert json.loads((folder / "modules.json").read_text())[0]["type"] == "sentence_transformers.models.Transformer"
    assert ownership.foreign(folder) == ["MY_NOTES.txt", "my_experiments/run1.txt"]

    (folder / "README.md").write_text("my own card")  # an edit: never replaced
    with pytest.raises(
        StPruneError,
        match="README.md was changed since st-prune wrote it, and --overwrite never replaces your edits; move it away",
    ):
        export_model(model, folder, overwrite=True)
    assert (folder / "README.md").read_text() == "my own card"

    taxes = tmp_path / "taxes"
    taxes.mkdir()
    (taxes / "modules.json").write_text("[]")
    (taxes / "taxes.xlsx").write_text("2024")
    status, err = run_cli(
        ["prune", tiny_llm("llama", layers=2), "--layers", "1", "--output", taxes, "--overwrite"], capsys
    )
    refused(
        status,
        err,
        f"{taxes} holds no export st-prune wrote (no file there is recorded in its "
        ".st-prune-files.json), and --overwrite replaces only st-prune's own files; choose another "
        "--output or move those files away yourself",
    )
    assert snapshot(taxes) == {"modules.json": b"[]", "taxes.xlsx": b"2024"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exp", "taxes"]  # no staging folder left either


def test_case4_deploy_overwrite_keeps_the_users_files_in_onnx(tiny_llm, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from st_prune import encoder_from_llm, export_model

    folder = export_model(encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1), tmp_path / "model")
    assert run_cli(["deploy", folder, "--onnx"], capsys)[0] == 0
    (folder / "onnx" / "my_benchmark.txt").write_text("mine")
    refused(*run_cli(["deploy", folder, "--onnx"], capsys), "onnx already has files; pass --overwrite")
    assert run_cli(["deploy", folder, "--onnx", "--overwrite"], capsys)[0] == 0
    assert sorted(path.name for path in (folder / "onnx").iterdir()) == ["model.onnx", "my_benchmark.txt"]
    assert (folder / "onnx" / "my_benchmark.txt").read_text() == "mine"

    (folder / "onnx" / "model.onnx").write_bytes(b"my own graph")  # replaced by hand: the user's now
    refused(
        *run_cli(["deploy", folder, "--onnx", "--overwrite"], capsys),
        "model.onnx exists and was changed since st-prune wrote it, so it is never replaced; move it away",
    )
    assert (folder / "onnx" / "model.onnx").read_bytes() == b"my own graph"
