"""Bad input to every verb ends in one line naming the fix and exit status 2, never a traceback (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_errors import assert_one_line, run_cli
from recipe_files import write_recipe

from st_prune import cli


# --- destinations that cannot be written: refused before any model is loaded ---------------------------
def _unwritable_folder(tmp_path) -> Path:
    """A folder no file can be created in. chmod does not stop root, so as root use a read-only pseudo-filesystem."""
    import os
    from pathlib import Path

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    for candidate in (Path("/sys"), Path("/proc/sys")):
        try:
            probe = candidate / "st-prune-write-test"
            probe.mkdir()
        except OSError:
            return candidate
        probe.rmdir()
    pytest.skip("no read-only location to test with on this machine")


@pytest.fixture(params=["no-permission", "file-as-parent"])
def unwritable(request, tmp_path):
    """A path inside which nothing can be written: ``unwritable / NAME`` is what a verb is asked to write."""
    if request.param == "no-permission":
        return _unwritable_folder(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker


def test_prune_to_an_unwritable_folder(tiny_llm, unwritable, capsys, no_model_load):
    status, err = run_cli(["prune", tiny_llm(), "--layers", "1", "--output", unwritable / "out"], capsys)
    assert_one_line(status, err, "--output")
    assert "cannot write" in err or "is a file, not a folder" in err


def test_train_to_an_unwritable_folder(tiny_llm, unwritable, triplets_file, capsys, no_model_load):
    status, err = run_cli(
        [
            "train",
            tiny_llm(),
            "--data",
            triplets_file,
            "--layers",
            "1",
            "--batch-size",
            "4",
            "--output",
            unwritable / "out",
        ],
        capsys,
    )
    assert_one_line(status, err, "--output")
    assert "cannot write" in err or "is a file, not a folder" in err


def test_scan_to_an_unwritable_file(tiny_llm, unwritable, triplets_file, capsys, no_model_load):
    status, err = run_cli(
        ["scan", tiny_llm(), "--data", triplets_file, "--batch-size", "4", "--output", unwritable / "scan.json"], capsys
    )
    assert_one_line(status, err, "--output")
    assert "cannot write" in err or "is a file, not a folder" in err


def test_scan_output_that_is_a_folder_is_refused_before_the_scan(
    tiny_llm, triplets_file, tmp_path, capsys, no_model_load
):
    (tmp_path / "existing").mkdir()
    status, err = run_cli(
        ["scan", tiny_llm(), "--data", triplets_file, "--batch-size", "4", "--output", tmp_path / "existing"], capsys
    )
    assert_one_line(status, err, "is a folder; give a file name", "existing/scan.json")
    assert list((tmp_path / "existing").iterdir()) == []


def test_scan_on_a_missing_gpu_is_one_line(tiny_llm, triplets_file, tmp_path, capsys, no_model_load):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    status, err = run_cli(
        [
            "scan",
            tiny_llm(),
            "--data",
            triplets_file,
            "--batch-size",
            "4",
            "--device",
            "cuda",
            "--output",
            tmp_path / "scan.json",
        ],
        capsys,
    )
    assert_one_line(status, err, "--device cuda: no CUDA device is available", "pass --device cpu")
    status, err = run_cli(
        ["scan", tiny_llm(), "--data", triplets_file, "--device", "gpu0", "--output", tmp_path / "scan.json"], capsys
    )
    assert_one_line(status, err, "is not a torch device")


def test_encoder_from_llm_on_a_missing_gpu_fails_before_loading(tiny_llm):
    import torch

    from st_prune.errors import StPruneError
    from st_prune.model.truncated_llm import encoder_from_llm

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(StPruneError, match="no CUDA device is available"):
        encoder_from_llm(str(tiny_llm()), layers=1, device="cuda")


def _tiny_recipe(folder, model):

    return write_recipe(folder, model)


def test_run_to_an_unwritable_folder(tiny_llm, unwritable, tmp_path, capsys):
    recipe = _tiny_recipe(tmp_path, tiny_llm())
    status, err = run_cli(["run", recipe, "--output", unwritable / "run"], capsys)
    assert_one_line(status, err, "--output")
    assert "cannot write" in err or "is a file, not a folder" in err


def test_run_zoo_index_that_is_a_file_is_refused_before_any_stage(tiny_llm, tmp_path, capsys):
    recipe = _tiny_recipe(tmp_path, tiny_llm())
    index = tmp_path / "index.md"
    index.write_text("mine")
    status, err = run_cli(["run", recipe, "--output", tmp_path / "run", "--zoo-index", index], capsys)
    assert_one_line(status, err, "--zoo-index", "is a file; pass the folder")
    assert not (tmp_path / "run").exists()
    assert index.read_text() == "mine"


# --- messages that must be true --------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [[], ["--batch-size", "2"]], ids=["default-batch", "batch-2"])
def test_one_row_data_asks_for_data_not_a_smaller_batch(tiny_llm, tmp_path, capsys, no_model_load, batch):
    import json

    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"anchor": "a cat", "positive": "the cat", "negative": "a road"}) + "\n")
    status, err = run_cli(
        ["train", tiny_llm(), "--data", data, "--layers", "1", *batch, "--output", tmp_path / "out"], capsys
    )
    assert_one_line(status, err, "at most 1 row(s) per instruction", "a batch needs at least 2", "add data")
    assert "lower the batch size" not in err


def test_three_rows_still_suggest_the_batch_size_that_fits(tiny_llm, tmp_path, capsys, no_model_load):
    import json

    data = tmp_path / "three.jsonl"
    data.write_text(
        "".join(json.dumps({"anchor": f"a {w}", "positive": f"the {w}"}) + "\n" for w in ("cat", "dog", "fox"))
    )
    status, err = run_cli(["train", tiny_llm(), "--data", data, "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "(largest: 3); lower the batch size to at most 3 or add data")


# --- the Hub: an address that answers nothing is not a token problem, and a non-URL is named -----------------
def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.fixture(scope="module")
def exported(tiny_llm, tmp_path_factory):
    output = tmp_path_factory.mktemp("exported") / "model"
    assert cli.main(["prune", str(tiny_llm()), "--layers", "1", "--output", str(output)]) == 0
    return output


@pytest.fixture()
def fake_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_FakeTokenForTestsOnly0123456789")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_publish_to_a_closed_port_says_the_hub_is_unreachable(exported, capsys, monkeypatch, fake_token):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    status, err = run_cli(["publish", exported, "--repo-id", "org/x"], capsys)
    assert_one_line(status, err, f"the Hub at {endpoint} cannot be reached", "HF_ENDPOINT")
    assert "retry" not in err and "token" not in err


def test_publish_with_hf_endpoint_not_a_url_names_it(exported, capsys, monkeypatch, fake_token):
    monkeypatch.setenv("HF_ENDPOINT", "notaurl")
    status, err = run_cli(["publish", exported, "--repo-id", "org/x"], capsys)
    assert_one_line(status, err, "HF_ENDPOINT='notaurl' is not a URL")
    assert "retry" not in err


def test_run_push_to_a_closed_port_is_not_a_token_problem(tiny_llm, tmp_path, capsys, monkeypatch, fake_token):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    recipe = _tiny_recipe(tmp_path, tiny_llm())
    status, err = run_cli(["run", recipe, "--output", tmp_path / "run", "--push-to-hub", "some-org"], capsys)
    assert_one_line(status, err, "cannot be reached", "HF_ENDPOINT")
    assert "write token" not in err
    assert not (tmp_path / "run").exists()


def test_run_push_to_hub_with_a_bad_org_names_push_to_hub(tiny_llm, tmp_path, capsys, fake_token):
    recipe = _tiny_recipe(tmp_path, tiny_llm())
    status, err = run_cli(["run", recipe, "--output", tmp_path / "run", "--push-to-hub", "bad org"], capsys)
    assert_one_line(status, err, "invalid --push-to-hub 'bad org'")
    assert "--repo-id" not in err
    assert not (tmp_path / "run").exists()


HUB_TASKS = "SciFact,STS17"


@pytest.fixture()
def uncached_hub_tasks():
    from huggingface_hub import constants

    cached = [
        name
        for name in ("datasets--mteb--scifact", "datasets--mteb--sts17-crosslingual-sts")
        if (Path(constants.HF_HUB_CACHE) / name).exists()
    ]
    if cached:
        pytest.skip(f"the test needs datasets that are not in the local cache: {cached}")


def test_eval_offline_leaves_no_empty_results_folder(exported, tmp_path, capsys, monkeypatch, uncached_hub_tasks):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # As a user's HF_HUB_OFFLINE=1 reads at import: the variable alone let the client try huggingface.co first.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    output = tmp_path / "results"
    status, err = run_cli(["eval", exported, "--tasks", HUB_TASKS, "--model-name", "org/m", "--output", output], capsys)
    assert_one_line(status, err, "hf download --repo-type dataset")
    assert not output.exists()


def test_eval_without_network_probes_the_hub_once_and_works_offline(
    exported, tmp_path, capsys, monkeypatch, uncached_hub_tasks
):
    import datasets.config
    import huggingface_hub.constants

    from st_prune.util import hub_offline

    # Online mode, but the Hub's address refuses connections: what a machine without network sees.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    probes = []
    real_probe = hub_offline.hub_reachable
    monkeypatch.setattr(hub_offline, "hub_reachable", lambda *a, **k: probes.append(1) or real_probe(*a, **k))
    datasets_offline = []
    import mteb

    real_evaluate = mteb.evaluate
    monkeypatch.setattr(
        mteb,
        "evaluate",
        lambda *a, **k: datasets_offline.append(datasets.config.HF_HUB_OFFLINE) or real_evaluate(*a, **k),
    )

    output = tmp_path / "results"
    status, err = run_cli(["eval", exported, "--tasks", HUB_TASKS, "--model-name", "org/m", "--output", output], capsys)
    assert_one_line(status, err, "2 task(s) skipped", "hf download --repo-type dataset")
    assert probes == [1]  # one probe for both tasks
    assert datasets_offline == [True, True]  # each task's dataset load ran offline: no ~25 s of retries each
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored afterwards
    assert not output.exists()
