"""Truthful dtype: `--dtype` / `base.dtype` decide the dtype a model loads, trains and is saved in; cards and the zoo
index say what the saved files hold; a dtype this machine cannot run is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.model.dtypes import checkpoint_dtype, saved_weights


def write_triplets(path: Path, count: int = 8) -> Path:
    path.write_text(
        "".join(
            json.dumps({"anchor": f"query {i} about cats", "positive": f"cats {i} sleep", "negative": f"dogs {i} run"})
            + "\n"
            for i in range(count)
        )
    )
    return path


def write_recipe(folder: Path, model: Path, **training) -> Path:
    recipe = {
        "name": "dtype-test",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
        "variants": [{"name": "two", "layers": 2}],
        "scan": {"batch_size": 4, "num_batches": 1},
        "training": {"steps": 1, "batch_size": 4, "warmup_steps": 0, **training},
        "data": {"path": str(write_triplets(folder / "data.jsonl"))},
        "publish": {"org": "st-prune-test"},
        "card": {"license": "apache-2.0"},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_prune_saves_the_dtype_asked_for(tiny_llm, tmp_path):
    model = tiny_llm("llama", layers=4)  # saved in float32
    assert cli.main(["prune", str(model), "--layers", "2", "--output", str(tmp_path / "auto")]) == 0
    assert (
        cli.main(["prune", str(model), "--layers", "2", "--dtype", "bfloat16", "--output", str(tmp_path / "bf16")]) == 0
    )
    auto, bf16 = saved_weights(tmp_path / "auto"), saved_weights(tmp_path / "bf16")
    assert auto["dtype"] == "float32" and bf16["dtype"] == "bfloat16"
    assert bf16["bytes"] < 0.6 * auto["bytes"]  # half the bytes per weight, plus the same small headers
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    from sentence_transformers import SentenceTransformer

    loaded = SentenceTransformer(str(tmp_path / "bf16"))
    assert loaded[0].auto_model.dtype == torch.bfloat16 and loaded.encode(["a cat"]).shape == (1, 32)


def test_a_bfloat16_run_says_bfloat16_in_its_card_and_zoo_index(tiny_llm, tmp_path):
    model = tiny_llm("llama", layers=4)
    recipe = write_recipe(tmp_path, model)
    output = tmp_path / "run"
    assert cli.main(["run", str(recipe), "--output", str(output), "--dtype", "bfloat16"]) == 0
    assert yaml.safe_load((output / "recipe.yaml").read_text())["base"]["dtype"] == "bfloat16"
    folder = output / "models" / "tiny-llama-l3prune-two"
    weights = saved_weights(folder)
    assert weights["dtype"] == "bfloat16"
    assert weights["bytes"] == sum(path.stat().st_size for path in folder.glob("*.safetensors"))
    card = (folder / "README.md").read_text()
    assert "| Weight size on disk (bfloat16 safetensors) |" in card and "float32" not in card
    assert f"{weights['bytes'] / 1024**2:,.1f} MB" in card
    assert "| Precision | bfloat16 weights |" in card
    assert json.loads((output / "work" / "two" / "train.json").read_text())["dtype"] == "bfloat16"
    (row,) = json.loads((output / "models" / "zoo.json").read_text())
    assert (row["dtype"], row["weight_bytes"]) == ("bfloat16", weights["bytes"])
    assert f"| bfloat16, {weights['bytes'] / 1024**2:,.1f} MB |" in (output / "models" / "README.md").read_text()


def _refused_before_work(capsys, argv, output: Path, *needles: str) -> None:
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    for needle in needles:
        assert needle in error, error
    assert not (output / "scan").exists() and not (output / "run.json").exists()


def test_run_refuses_what_this_machine_cannot_train_before_any_work(tiny_llm, tmp_path, capsys, monkeypatch):
    model = tiny_llm("llama", layers=4)
    recipe, output = write_recipe(tmp_path, model), tmp_path / "run"
    if torch.cuda.is_available():
        pytest.skip("checks a machine without CUDA (the GPU case is faked below)")
    # float16 cannot be trained on CPU: asked for, or the checkpoint's own dtype under auto.
    _refused_before_work(
        capsys,
        ["run", str(recipe), "--output", str(output), "--dtype", "float16"],
        output,
        "float16 cannot be trained on CPU",
        "--dtype float32",
        "--set base.dtype=float32",
    )
    fp16_checkpoint = tmp_path / "fp16-base"
    fp16_checkpoint.mkdir()
    for path in model.iterdir():
        (fp16_checkpoint / path.name).write_bytes(path.read_bytes())
    config = json.loads((fp16_checkpoint / "config.json").read_text())
    (fp16_checkpoint / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    assert checkpoint_dtype(str(fp16_checkpoint)) == "float16"
    _refused_before_work(
        capsys,
        ["run", str(recipe), "--output", str(output), "--set", f"base.model={fp16_checkpoint}"],
        output,
        "the checkpoint's own dtype (auto), float16 cannot be trained",
        "--dtype float32",
    )
    # bf16 mixed precision needs a GPU with bfloat16.
    _refused_before_work(
        capsys,
        ["run", str(recipe), "--output", str(output), "--set", "training.bf16=true"],
        output,
        "training.bf16 is true",
        "--set training.bf16=false",
    )
    # A GPU without bfloat16 (faked: this machine has none) refuses bfloat16 weights.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla T4")
    _refused_before_work(
        capsys,
        ["run", str(recipe), "--output", str(output), "--dtype", "bfloat16"],
        output,
        "bfloat16 needs a GPU with bfloat16 support and Tesla T4 has none",
        "--dtype float32",
    )


def test_train_refuses_float16_on_cpu_before_loading(tiny_llm, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("float16 trains on a GPU")
    data = write_triplets(tmp_path / "data.jsonl")
    output = tmp_path / "trained"
    argv = [
        "train",
        str(tiny_llm("llama", layers=4)),
        "--data",
        str(data),
        "--layers",
        "2",
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--dtype",
        "float16",
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "float16 cannot be trained on CPU" in error and "--dtype float32" in error
    assert not output.exists() and not Path(f"{output}.work").exists()


def test_an_overflowing_scan_names_the_dtype_flag(tiny_llm):
    from st_prune.l3prune.scan import L3Prune
    from st_prune.model.truncated_llm import encoder_from_llm

    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=32)
    with torch.no_grad():  # what a float16 overflow looks like from layer 3 on
        model[0].auto_model.layers[2].mlp.down_proj.weight.fill_(float("inf"))
    data = Dataset.from_dict({"anchor": ["a cat", "a dog"], "positive": ["cats sleep", "dogs run"]})
    with pytest.raises(
        StPruneError, match=r"depth\(s\) 3, 4 .*overflows there: load it in float32 with --dtype float32"
    ):
        L3Prune(batch_size=2, num_batches=1, show_progress_bar=False).select(model, data)
