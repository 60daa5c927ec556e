"""`st-prune deploy`: ONNX and OpenVINO files that reproduce the torch model, run by their runtimes directly."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from st_prune import encoder_from_llm, export_model  # noqa: E402
from st_prune.cli import main as cli_main  # noqa: E402
from st_prune.deploy.deploy import FILES, MIN_COSINE, REPORT_NAME, deploy  # noqa: E402
from st_prune.deploy.runtime import encode_with_graph, onnx_runner, openvino_runner  # noqa: E402
from st_prune.prompt_format import instruction_prompt  # noqa: E402
from st_prune.util import ownership  # noqa: E402

QUERY_PROMPT = instruction_prompt("Given a question, retrieve passages that answer the question")  # st-prune's format
# Lengths from 1 to well past the tiny models' 16-token sliding window, so padding is long and windows matter.
TEXTS = [
    "hello",
    "A man is playing a guitar on the street.",
    "Sentence embeddings map text to vectors for semantic search. " * 3,
    "Two dogs run across a green field in the sun.",
]


def _model_folder(tiny_llm, folder, family="llama", pooling="weighted_mean"):
    model = encoder_from_llm(
        str(tiny_llm(family, layers=4)), layers=3, pooling=pooling, prompts={"query": QUERY_PROMPT}
    )
    return export_model(model, folder)


def _load(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _torch_embeddings(model, prompt=None):
    model.tokenizer.padding_side = "right"
    return model.encode(TEXTS, prompt=prompt, convert_to_numpy=True)


def _graph_embeddings(model, runner, padding_side, prompt=None):
    model.tokenizer.padding_side = padding_side
    return encode_with_graph(model, runner, TEXTS, prompt=prompt)


def _folder_entries(folder):
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text"])
def test_fp32_files_reproduce_torch_with_either_padding_side(tiny_llm, tmp_path, family):
    folder = _model_folder(tiny_llm, tmp_path / "model", family)
    report = deploy(folder)

    onnx_file, openvino_file = folder / FILES["onnx", None], folder / FILES["openvino", None]
    assert report["files"][FILES["onnx", None]]["shipped"] and report["files"][FILES["openvino", None]]["shipped"]
    assert report["checked_on"]["prompts"] == ["query"]
    # What sentence-transformers' backends feed and read: exactly these names, no position_ids, no KV cache.
    import onnxruntime
    import openvino

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert [node.name for node in session.get_outputs()] == ["last_hidden_state"]
    ir = openvino.Core().read_model(str(openvino_file))
    assert [port.get_any_name() for port in ir.inputs] == ["input_ids", "attention_mask"]
    assert [port.get_any_name() for port in ir.outputs] == ["last_hidden_state"]

    model = _load(folder)
    runners = {"onnx": onnx_runner(onnx_file), "openvino": openvino_runner(openvino_file)}
    for prompt in (None, QUERY_PROMPT):
        # The reference is torch with right padding: left padding must not move any token's position.
        expected = _torch_embeddings(model, prompt)
        for backend, runner in runners.items():
            for padding_side in ("right", "left"):
                exported = _graph_embeddings(model, runner, padding_side, prompt)
                assert np.abs(exported - expected).max() <= 1e-4, (backend, prompt, padding_side)


def test_prompt_is_excluded_from_pooling_as_in_torch(tiny_llm, tmp_path):
    """Mean pooling: the prompt's tokens are left out after the graph, from the prompt_length ST computes."""
    folder = _model_folder(tiny_llm, tmp_path / "model", "qwen3", pooling="mean")
    deploy(folder, backends=["onnx"])
    model = _load(folder)
    runner = onnx_runner(folder / FILES["onnx", None])
    with_prompt = _graph_embeddings(model, runner, "left", QUERY_PROMPT)
    assert np.abs(with_prompt - _torch_embeddings(model, QUERY_PROMPT)).max() <= 1e-4
    # Pooling the prompt's tokens too would give another vector: the comparison above can tell them apart.
    model[1].include_prompt = True
    assert np.abs(model.encode(TEXTS, prompt=QUERY_PROMPT) - with_prompt).max() > 1e-3


def test_int8_files_ship_only_above_the_cosine_bar(tiny_llm, tmp_path, monkeypatch):
    folder = _model_folder(tiny_llm, tmp_path / "model")
    report = deploy(folder, quantize=["int8"])
    model = _load(folder)
    expected = _torch_embeddings(model)
    for name, runner in ((FILES["onnx", "int8"], onnx_runner), (FILES["openvino", "int8"], openvino_runner)):
        entry = report["files"][name]
        assert entry["shipped"] == (entry["cosine_to_torch_min"] >= MIN_COSINE)
        assert (folder / name).is_file() == entry["shipped"]
        if entry["shipped"]:
            exported = _graph_embeddings(model, runner(folder / name), "left")
            cosines = np.sum(exported * expected, axis=1)  # both normalized
            assert cosines.min() >= MIN_COSINE - 1e-3
            assert "file_name" in entry["load"]
    # The int8 files are smaller than fp32 ones (weights stored in 8 bits).
    assert (folder / "openvino/openvino_model_int8_weights.bin").stat().st_size < (
        folder / "openvino/openvino_model.bin"
    ).stat().st_size

    # A bar no quantized file can reach: nothing quantized is written, the report says why, fp32 still ships.
    monkeypatch.setattr("st_prune.deploy.deploy.MIN_COSINE", 1.01)
    report = deploy(folder, quantize=["int8"], overwrite=True)
    assert not (folder / FILES["onnx", "int8"]).exists()
    assert not (folder / FILES["openvino", "int8"]).exists()
    assert not (folder / "openvino/openvino_model_int8_weights.bin").exists()
    assert "< 1.01" in report["files"][FILES["onnx", "int8"]]["reason"]
    assert json.loads((folder / REPORT_NAME).read_text()) == report
    assert (folder / FILES["onnx", None]).is_file()


def test_one_backend_at_a_time_keeps_the_others_files_and_report(tiny_llm, tmp_path):
    folder = _model_folder(tiny_llm, tmp_path / "model")
    assert cli_main(["deploy", str(folder), "--openvino"]) == 0
    assert not (folder / "onnx").exists()  # the ONNX graph was only the conversion's source
    assert cli_main(["deploy", str(folder), "--onnx"]) == 0
    report = json.loads((folder / REPORT_NAME).read_text())
    assert set(report["files"]) == {FILES["onnx", None], FILES["openvino", None]}
    assert (folder / FILES["openvino", None]).is_file() and (folder / FILES["onnx", None]).is_file()

    # --overwrite replaces st-prune's files in the backend's folder (nothing stale of st-prune's stays beside the
    # new files); the user's stay.
    (folder / "onnx" / "stale.onnx").write_bytes(b"")
    ownership.record(folder, ["onnx/stale.onnx"], by="deploy")
    (folder / "onnx" / "mine.txt").write_text("the user's")
    assert cli_main(["deploy", str(folder), "--onnx", "--overwrite"]) == 0
    assert sorted(path.name for path in (folder / "onnx").iterdir()) == ["mine.txt", "model.onnx"]


def _refused(capsys, argv):
    capsys.readouterr()  # drop what building the model printed
    assert cli_main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    return error


def test_bad_input_is_one_line_and_writes_nothing(tiny_llm, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a sentence-transformers model folder" in _refused(capsys, ["deploy", str(empty)])
    assert list(empty.iterdir()) == []
    assert "is not a folder" in _refused(capsys, ["deploy", str(tmp_path / "absent")])

    encoder = tmp_path / "bert"
    encoder.mkdir()
    (encoder / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])
    )
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "not 'bert'" in _refused(capsys, ["deploy", str(encoder)])

    folder = _model_folder(tiny_llm, tmp_path / "model")
    before = _folder_entries(folder)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
        error = _refused(capsys, ["deploy", str(folder), "--openvino"])
    assert "pip install openvino" in error
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "nncf", None)
        assert "pip install nncf" in _refused(capsys, ["deploy", str(folder), "--quantize", "int8"])
    assert _folder_entries(folder) == before

    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_text("not st-prune's")
    for overwrite in ([], ["--overwrite"]):
        assert "was not written by st-prune, so it is never replaced" in _refused(
            capsys, ["deploy", str(folder), *overwrite]
        )
    assert _folder_entries(folder) == sorted(before + ["onnx", "onnx/model.onnx"])


def test_a_failure_half_way_leaves_the_folder_as_it_was(tiny_llm, tmp_path, monkeypatch):
    folder = _model_folder(tiny_llm, tmp_path / "model")
    before = _folder_entries(folder)

    def broken(*args, **kwargs):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr("st_prune.deploy.openvino.convert_onnx_to_openvino", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        deploy(folder)
    assert _folder_entries(folder) == before  # no onnx/, no deploy.json, no staging folder


def test_an_fp32_file_that_disagrees_with_torch_is_refused(tiny_llm, tmp_path, monkeypatch):
    """The check is real: a graph without the final norm must not ship."""
    folder = _model_folder(tiny_llm, tmp_path / "model")
    before = _folder_entries(folder)
    from st_prune.deploy import onnx as onnx_export

    export = onnx_export.export_onnx

    def export_without_norm(model, example, path):
        model.norm = torch.nn.Identity()
        return export(model, example, path)

    monkeypatch.setattr(onnx_export, "export_onnx", export_without_norm)
    with pytest.raises(Exception, match="differs from the torch model"):
        deploy(folder, backends=["onnx"])
    assert _folder_entries(folder) == before


def test_weights_over_the_threshold_go_to_one_side_file_that_the_runtimes_load(tiny_llm, tmp_path, monkeypatch):
    """Models over protobuf's 2 GB limit: model.onnx + model.onnx_data (optimum's name), forced here on a tiny model."""
    import onnxruntime

    from st_prune.deploy import onnx as onnx_export

    folder = _model_folder(tiny_llm, tmp_path / "model")
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 0)
    report = deploy(folder, quantize=["int8"])  # deploy's own check: fp32 files within 1e-4 of torch

    onnx_folder = folder / "onnx"
    expected = {"model.onnx", "model.onnx_data"}
    if report["files"][FILES["onnx", "int8"]]["shipped"]:
        expected |= {"model_qint8_avx2.onnx", "model_qint8_avx2.onnx_data"}  # not the quantizer's ".data"
    assert {path.name for path in onnx_folder.iterdir()} == expected
    for name in expected - {"model.onnx_data", "model_qint8_avx2.onnx_data"}:
        assert onnx_export.uses_external_data(onnx_folder / name)
        assert (onnx_folder / (name + "_data")).stat().st_size > 0

    # The side file is found relative to the graph, so a moved folder (a Hub download) still loads.
    moved = tmp_path / "moved"
    folder.rename(moved)
    model = _load(moved)
    session = onnxruntime.InferenceSession(str(moved / FILES["onnx", None]), providers=["CPUExecutionProvider"])
    exported = _graph_embeddings(model, lambda inputs: session.run(None, inputs)[0], "left")
    assert np.abs(exported - _torch_embeddings(model)).max() <= 1e-4
    # The OpenVINO IR converted from the split graph is complete on its own.
    converted = _graph_embeddings(model, openvino_runner(moved / FILES["openvino", None]), "right")
    assert np.abs(converted - _torch_embeddings(model)).max() <= 1e-4


def test_export_onnx_stays_one_file_below_the_threshold_unless_asked(tiny_llm, tmp_path):
    from st_prune.deploy import onnx as onnx_export

    folder = _model_folder(tiny_llm, tmp_path / "model")
    model = _load(folder)
    example = model.preprocess(["hello", TEXTS[2]])
    transformer = model[0].model
    assert onnx_export.parameter_bytes(transformer) < onnx_export.EXTERNAL_DATA_THRESHOLD
    for name in ("single", "split"):
        (tmp_path / name).mkdir()
    single = onnx_export.export_onnx(transformer, example, tmp_path / "single" / "model.onnx")
    split = onnx_export.export_onnx(transformer, example, tmp_path / "split" / "model.onnx", external_data=True)
    assert sorted(path.name for path in single.parent.iterdir()) == ["model.onnx"]
    assert not onnx_export.uses_external_data(single)
    assert sorted(path.name for path in split.parent.iterdir()) == ["model.onnx", "model.onnx_data"]
    expected = _torch_embeddings(model)
    for path in (single, split):
        assert np.abs(_graph_embeddings(model, onnx_runner(path), "right") - expected).max() <= 1e-4, path.parent.name


def st_prune_deploy():
    import st_prune.deploy.deploy

    return st_prune.deploy.deploy


def test_backend_speed_is_timed_in_interleaved_rounds(tiny_llm, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    import st_prune.deploy.runtime
    from st_prune.deploy.deploy import measure_backend_speed

    folder = _model_folder(tiny_llm, tmp_path / "model")
    report = deploy(folder, backends=["onnx"])
    calls = []
    real_graph, real_encode = st_prune.deploy.runtime.encode_with_graph, SentenceTransformer.encode
    monkeypatch.setattr(
        st_prune.deploy.runtime,
        "encode_with_graph",
        lambda *args, **kwargs: calls.append("onnx") or real_graph(*args, **kwargs),
    )
    monkeypatch.setattr(
        SentenceTransformer,
        "encode",
        lambda self, *args, **kwargs: calls.append("torch") or real_encode(self, *args, **kwargs),
    )
    speed = measure_backend_speed(folder, report, TEXTS, batch_size=2, rounds=3)
    assert calls == ["torch", "onnx"] * 4  # one warm-up, then three rounds, each backend once per round
    assert speed["torch"]["speedup"] == 1.0 and speed["onnx/model.onnx"]["rounds"] == 3
    assert speed["onnx/model.onnx"]["texts_per_second"] > 0
