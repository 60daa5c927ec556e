"""Issue 23, cases 9 and 11: damaged models, non-UTF-8 data, a full disk or file-size limit, a submission into its own
input, a damaged model_meta.json, and smaller slips: each one line naming the fix (exit 2), nothing half-written."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import stat
from pathlib import Path

import pytest
from bad_input import _left_in
from cli_errors import assert_one_line, run_cli
from evaluation_tasks import stsbenchmark_in_memory
from recipe_files import write_recipe
from training_rows import FAST, triplet_rows

from st_prune import cli


@pytest.fixture(scope="module")
def exported(tiny_llm, tmp_path_factory):
    """A folder written by `st-prune prune` (2 of 4 layers)."""
    output = tmp_path_factory.mktemp("exported") / "model"
    assert cli.main(["prune", str(tiny_llm()), "--layers", "2", "--output", str(output)]) == 0
    return output


def _damaged_copy(folder: Path, destination: Path, keep: int | None) -> Path:
    """A copy of ``folder`` whose model.safetensors is empty (keep None) or cut to its first ``keep`` bytes."""
    shutil.copytree(folder, destination)
    weights = destination / "model.safetensors"
    weights.write_bytes(b"" if keep is None else weights.read_bytes()[:keep])
    return destination


# --- case 9: a 0-byte or truncated model.safetensors --------------------------------------------------------
@pytest.mark.parametrize(
    "keep, problem",
    [(None, "model.safetensors is empty (0 bytes)"), (30_000, "model.safetensors is truncated (30,000 of ")],
    ids=["empty", "truncated"],
)
@pytest.mark.parametrize("verb", ["prune", "eval", "deploy"])
def test_damaged_weights_are_one_line(verb, keep, problem, tiny_llm, exported, tmp_path, capsys):
    source = tiny_llm() if verb == "prune" else exported
    model = _damaged_copy(source, tmp_path / "model", keep)
    before = _left_in(model)
    argv = {
        "prune": ["prune", model, "--layers", "1", "--output", tmp_path / "out"],
        "eval": [
            "eval",
            model,
            "--task-file",
            tmp_path / "sts.jsonl",
            "--task-type",
            "sts",
            "--model-name",
            "o/m",
            "--output",
            tmp_path / "out",
        ],
        "deploy": ["deploy", model, "--onnx"],
    }[verb]
    (tmp_path / "sts.jsonl").write_text(
        "".join(
            json.dumps({"sentence1": f"a cat {i}", "sentence2": f"the dog {i}", "score": float(i % 5)}) + "\n"
            for i in range(8)
        )
    )
    status, err = run_cli(argv, capsys)
    assert_one_line(
        status, err, f"the model in {model} is damaged or incomplete", problem, "copy or download the model again"
    )
    assert not (tmp_path / "out").exists()
    assert _left_in(model) == before  # deploy wrote nothing into the folder


def test_a_missing_shard_of_a_sharded_checkpoint_is_named(tiny_llm, tmp_path, capsys):
    model = tmp_path / "sharded"
    shutil.copytree(tiny_llm(), model)
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    status, err = run_cli(["prune", model, "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(status, err, "is damaged or incomplete: no model-00002-of-00002.safetensors")


# --- case 9: training data that is not UTF-8 -------------------------------------------------------------------
def _latin1_triplets(path: Path) -> Path:
    lines = [
        json.dumps({"anchor": f"a cat {i}", "positive": f"the cat {i}", "negative": f"a road {i}"}, ensure_ascii=False)
        for i in range(12)
    ]
    lines[3] = lines[3].replace("cat", "caf\u00e9")
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_scan_of_latin1_jsonl_names_the_line_and_the_fix(tiny_llm, tmp_path, capsys, no_model_load):
    data = _latin1_triplets(tmp_path / "data.jsonl")
    offset = data.read_bytes().index(b"\xe9")
    status, err = run_cli(["scan", tiny_llm(), "--data", data, "--output", tmp_path / "scan.json"], capsys)
    assert_one_line(
        status,
        err,
        f"{data} is not UTF-8 text: byte 0xe9 at offset {offset:,} (line 4)",
        "re-encode the file as UTF-8",
        "iconv -f latin1 -t utf-8 data.jsonl > data.utf8.jsonl",
    )
    assert not (tmp_path / "scan.json").exists()


def test_train_on_a_latin1_csv_and_an_echo_data_folder(tiny_llm, tmp_path, capsys, no_model_load):
    csv_file = tmp_path / "data.csv"
    csv_file.write_bytes(
        b"anchor,positive\n" + "".join(f"a caf\u00e9 {i},the cat {i}\n" for i in range(8)).encode("latin-1")
    )
    status, err = run_cli(
        ["train", tiny_llm(), "--data", csv_file, "--layers", "1", "--output", tmp_path / "o"], capsys
    )
    assert_one_line(status, err, f"{csv_file} is not UTF-8 text: byte 0xe9 at offset 21 (line 2)")
    echo = tmp_path / "echo"
    echo.mkdir()
    _latin1_triplets(echo / "nq.jsonl")  # an E5-mix task file
    status, err = run_cli(["train", tiny_llm(), "--data", echo, "--layers", "1", "--output", tmp_path / "o"], capsys)
    assert_one_line(status, err, f"{echo / 'nq.jsonl'} is not UTF-8 text", "(line 4)")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.work").exists()


# --- case 11: bad recipe data leaves no run folder ------------------------------------------------------------
@pytest.mark.parametrize(
    "data, message",
    [
        ("latin1.jsonl", "is not UTF-8 text"),
        ("empty.jsonl", "empty.jsonl has no rows"),
        ("empty-folder", "holds no .jsonl/.json/.csv/.parquet files"),
    ],
)
def test_run_refuses_bad_data_before_writing_anything(data, message, tiny_llm, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_llm())
    _latin1_triplets(tmp_path / "latin1.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "empty-folder").mkdir()
    status, err = run_cli(
        ["run", recipe, "--output", tmp_path / "run", "--set", f"data.path={tmp_path / data}"], capsys
    )
    assert_one_line(status, err, message)
    assert not (tmp_path / "run").exists()  # no run.json, no recipe.yaml


@pytest.fixture()
def file_size_limit():
    """``file_size_limit(bytes)``: what `ulimit -f` does, in this process (Python ignores SIGXFSZ, so a write past
    the limit fails with EFBIG); ``file_size_limit(None)`` and the test's end lift it again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda size: resource.setrlimit(resource.RLIMIT_FSIZE, (soft if size is None else size, hard))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_scan_under_a_file_size_limit_keeps_no_half_plot(
    tiny_llm,
    triplets_file,
    tmp_path,
    capsys,  # noqa: F811
    file_size_limit,
):
    argv = [
        "scan",
        tiny_llm(),
        "--data",
        triplets_file,
        "--batch-size",
        "4",
        "--num-batches",
        "1",
        "--output",
        tmp_path / "out" / "scan.json",
    ]
    from st_prune.l3prune import scan as l3prune

    real_plot = l3prune.L3PruneResult.plot

    def plot_under_limit(self, path, title=None):
        file_size_limit(20_000)  # scan.json (~1.5 KB) fits, the PNG (~50 KB) does not
        return real_plot(self, path, title)

    l3prune.L3PruneResult.plot = plot_under_limit
    try:
        status, err = run_cli(argv, capsys)
    finally:
        l3prune.L3PruneResult.plot = real_plot
    assert_one_line(status, err, f"a file exceeds the file-size limit while writing {tmp_path / 'out' / 'scan.png'}")
    # whole, with st-prune's record of it; no half scan.png, no temporary file
    assert _left_in(tmp_path / "out") == {"scan.json", ".st-prune-files.json"}


def test_no_space_left_is_one_line_naming_the_output(tiny_llm, tmp_path, capsys, monkeypatch):
    import st_prune.model.export

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(st_prune.model.export, "export_model", full_disk)
    status, err = run_cli(["prune", tiny_llm(), "--layers", "1", "--output", tmp_path / "out"], capsys)
    assert_one_line(
        status,
        err,
        f"no space left on the device while writing {tmp_path / 'out'}; free space on "
        "that disk, or choose another --output",
    )


def test_a_checkpoint_cut_short_is_not_kept(tiny_llm, tmp_path, file_size_limit):
    from datasets import Dataset

    from st_prune import encoder_from_llm
    from st_prune.training.trainer import TrainingConfig, train_encoder

    model = encoder_from_llm(str(tiny_llm()), layers=1, max_seq_length=64)
    config = TrainingConfig(**{**FAST, "max_steps": 1, "save_steps": 1})
    file_size_limit(4_000)  # the adapter's README fits, its weights and the optimizer state do not
    with pytest.raises(Exception) as raised:
        train_encoder(model, Dataset.from_list(triplet_rows(8)), config, tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert "File too large" in str(raised.value) or "os error 27" in str(raised.value), raised.value


def test_eval_under_a_file_size_limit_keeps_no_half_result(exported, tmp_path, capsys, file_size_limit):
    (tmp_path / "sts.jsonl").write_text(
        "".join(
            json.dumps({"sentence1": f"a cat {i}", "sentence2": f"the dog {i}", "score": float(i % 5)}) + "\n"
            for i in range(8)
        )
    )
    argv = [
        "eval",
        exported,
        "--task-file",
        tmp_path / "sts.jsonl",
        "--task-type",
        "sts",
        "--model-name",
        "o/m",
        "--output",
        tmp_path / "results",
    ]
    import mteb

    real_evaluate = mteb.evaluate

    def evaluate_under_limit(*args, **kwargs):
        file_size_limit(600)  # the task's result (~1.3 KB) is cut short
        return real_evaluate(*args, **kwargs)

    mteb.evaluate = evaluate_under_limit
    try:
        status, err = run_cli(argv, capsys)
    finally:
        mteb.evaluate = real_evaluate
    assert_one_line(status, err, "a file exceeds the file-size limit", "--output")
    assert not (tmp_path / "results").exists()  # no half sts.json that a re-run would take as done


# --- case 9: submit into its own input; a damaged model_meta.json ------------------------------------------------
@pytest.mark.parametrize("given, output", [("ev", "ev"), ("ev/results", "ev"), ("ev", "ev/results/sub")])
def test_submit_into_its_own_results_folder_is_refused(given, output, tmp_path, capsys, monkeypatch):
    (tmp_path / "ev" / "results" / "o__m" / "main").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    status, err = run_cli(["submit", given, "--output", output], capsys)
    assert_one_line(
        status, err, f"--output {output} is the results folder the submission is copied from", "choose a new folder"
    )
    assert [path.name for path in (tmp_path / "ev").rglob("*")] == ["results", "o__m", "main"]


@pytest.fixture()
def damaged_meta(tmp_path):
    """``damaged_meta(text)``: an eval results folder whose model_meta.json holds ``text``."""

    def write(text: str) -> Path:
        folder = tmp_path / "ev" / "results" / "o__m" / "main"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model_meta.json").write_text(text)
        (folder / "STSBenchmark.json").write_text("{}")
        return folder / "model_meta.json"

    return write


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"name": "o/m", "revi', "is not valid JSON"),
        ("[]", "is not a JSON object (it holds a list)"),
        ('{"name": "o/m", "revision": 5}', "is not a valid mteb ModelMeta (revision: Input should be a valid string)"),
    ],
)
def test_submit_with_a_damaged_model_meta_is_one_line(text, problem, damaged_meta, tmp_path, capsys):
    meta = damaged_meta(text)
    status, err = run_cli(["submit", tmp_path / "ev", "--output", tmp_path / "sub"], capsys)
    assert_one_line(status, err, f"{meta} {problem}", "re-run `st-prune eval`")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("text", ['{"name": "o/m", "revi', "[]"])
def test_eval_into_a_folder_with_a_damaged_model_meta_is_one_line(text, exported, damaged_meta, tmp_path, capsys):
    meta = damaged_meta(text)
    (tmp_path / "sts.jsonl").write_text(
        "".join(
            json.dumps({"sentence1": f"a cat {i}", "sentence2": f"the dog {i}", "score": float(i % 5)}) + "\n"
            for i in range(8)
        )
    )
    status, err = run_cli(
        [
            "eval",
            exported,
            "--task-file",
            tmp_path / "sts.jsonl",
            "--task-type",
            "sts",
            "--model-name",
            "o/m",
            "--revision",
            "main",
            "--output",
            tmp_path / "ev",
        ],
        capsys,
    )
    assert_one_line(status, err, str(meta), "delete it (st-prune eval writes it again)")
    assert meta.read_text() == text


@pytest.fixture(scope="module")
def mteb_results(exported, tmp_path_factory):
    """An `st-prune eval --output` folder holding one MTEB task's result (STSBenchmark, its rows given in memory)."""

    from st_prune.evaluation.evaluate import evaluate_model
    from st_prune.evaluation.model_meta import build_model_meta
    from st_prune.util.local_only import load_model_folder

    root = tmp_path_factory.mktemp("mteb-results") / "ev"
    model = load_model_folder(exported)
    meta = build_model_meta(model, name="o/m", revision="main")
    evaluate_model(model, [stsbenchmark_in_memory()], meta=meta, output_dir=root)
    return root


def test_submit_under_a_file_size_limit_leaves_no_half_submission(mteb_results, tmp_path, capsys, file_size_limit):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("mine")
    file_size_limit(500)  # the task's result (~1.2 KB) is cut short while it is copied
    status, err = run_cli(["submit", mteb_results, "--output", tmp_path / "sub"], capsys)
    assert_one_line(status, err, f"a file exceeds the file-size limit while writing {tmp_path / 'sub'}")
    assert _left_in(tmp_path) == {"sub"}  # no staging folder
    assert _left_in(tmp_path / "sub") == {"notes.txt"}
    file_size_limit(None)  # space again: the submission lands beside the user's file
    assert run_cli(["submit", mteb_results, "--output", tmp_path / "sub"], capsys)[0] == 0
    assert _left_in(tmp_path / "sub") == {
        "notes.txt",
        "results",
        "o_models.py",
        "SUBMISSION.md",
        ".st-prune-files.json",
    }
    assert (tmp_path / "sub" / "results" / "o__m" / "main" / "STSBenchmark.json").is_file()


# --- case 11: smaller slips --------------------------------------------------------------------------------------
def test_dry_run_refuses_a_depth_the_base_does_not_have(tiny_llm, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny_llm(layers=6), base)
    (base / "model.safetensors").unlink()  # no weights at all: the dry run reads the config alone
    recipe = write_recipe(tmp_path, base, variants=[{"name": "a", "layers": 2}])
    assert cli.main(["run", str(recipe), "--output", str(tmp_path / "run"), "--dry-run"]) == 0
    status, err = run_cli(
        ["run", recipe, "--output", tmp_path / "run", "--dry-run", "--set", "variants.0.layers=99"], capsys
    )
    assert_one_line(
        status,
        err,
        "variant 'a' keeps 99 layers but st-prune-test/tiny-llama has 6",
        "--set variants.0.layers=K with 1 <= K <= 6",
    )
    assert not (tmp_path / "run").exists()


def test_trim_held_out_that_is_missing_names_held_out(exported, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a cat\nthe dog\n")
    status, err = run_cli(
        ["trim", exported, "--corpus", corpus, "--held-out", tmp_path / "missing.txt", "--output", tmp_path / "out"],
        capsys,
    )
    assert_one_line(status, err, f"--held-out {tmp_path / 'missing.txt'} not found; give --held-out a text file")
    assert "--corpus" not in err


def test_run_of_a_folder_says_it_is_a_folder_and_what_to_pass(tiny_llm, tmp_path, capsys):
    write_recipe(tmp_path, tiny_llm())
    status, err = run_cli(["run", tmp_path, "--dry-run"], capsys)
    assert_one_line(
        status,
        err,
        f"recipe {tmp_path} is a folder; pass a recipe YAML file such as {tmp_path / 'recipe.yaml'}",
        "or a shipped recipe's name",
    )
    assert "does not exist" not in err


@pytest.fixture()
def umask():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def test_the_trained_adapter_follows_the_umask(tiny_llm, tmp_path, umask):
    from datasets import Dataset

    from st_prune import encoder_from_llm
    from st_prune.pipeline.stages.train import ADAPTER, train_variant
    from st_prune.training.trainer import TrainingConfig

    model = encoder_from_llm(str(tiny_llm()), layers=1, max_seq_length=64)
    config = TrainingConfig(**{**FAST, "max_steps": 1})
    train_variant(
        model,
        Dataset.from_list(triplet_rows(8)),
        None,
        config,
        tmp_path,
        resume=None,
        settings={},
        layers=1,
        log=lambda _line: None,
    )
    adapter = tmp_path / ADAPTER
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [adapter, *adapter.rglob("*")]}
    assert "adapter_model.safetensors" in modes
    assert modes == {name: 0o750 if (adapter / name).is_dir() or name == ADAPTER else 0o640 for name in modes}
    assert _left_in(tmp_path) >= {ADAPTER} and not any(".st-prune-staging-" in name for name in _left_in(tmp_path))
