"""The user-facing export: plain ST reloads it exactly, it holds only kept layers, LoRA is merged, writes are atomic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from export_texts import TEXTS
from plain_st import encode_in_plain_process

from st_prune import encoder_from_llm, export_model
from st_prune.cli import main as cli_main
from st_prune.model.export import weight_bytes

QUERY_PROMPT = "Instruct: Retrieve semantically similar text\nQuery: "


@pytest.mark.parametrize(
    ("family", "pooling"), [("llama", "last_token"), ("qwen3", "weighted_mean"), ("gemma3_text", "mean")]
)
def test_plain_sentence_transformers_reproduces_the_export(tiny_llm, tmp_path, family, pooling):
    model = encoder_from_llm(
        str(tiny_llm(family, layers=4)), layers=3, pooling=pooling, prompts={"query": QUERY_PROMPT}
    )
    expected_docs = model.encode(TEXTS)
    expected_queries = model.encode(TEXTS, prompt_name="query")
    output = export_model(model, tmp_path / "export")

    modules = json.loads((output / "modules.json").read_text())
    assert [entry["type"] for entry in modules] == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
    ]
    docs, info = encode_in_plain_process(output, TEXTS, tmp_path)
    queries, _ = encode_in_plain_process(output, TEXTS, tmp_path, prompt=QUERY_PROMPT)
    assert np.abs(docs - expected_docs).max() <= 1e-5
    assert np.abs(queries - expected_queries).max() <= 1e-5
    assert info["prompts"]["query"] == QUERY_PROMPT
    # Last-token pooling must still see EOS after a plain reload (it lives in tokenizer.json).
    assert (info["first_ids"][-1] == info["eos_token_id"]) == (pooling == "last_token")

    kept_parameter_bytes = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    assert abs(weight_bytes(output) - kept_parameter_bytes) <= 0.01 * kept_parameter_bytes
    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == 3


def test_lora_adapters_are_merged_into_the_export(tiny_llm, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), layers=2)
    module = model[0]
    module.model = get_peft_model(module.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA B starts at zero; make the adapter actually change the output
        for name, parameter in module.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    adapted = model.encode(TEXTS)
    output = export_model(model, tmp_path / "merged")

    assert not (output / "adapter_config.json").exists()
    reloaded, _ = encode_in_plain_process(output, TEXTS, tmp_path)
    assert np.abs(reloaded - adapted).max() <= 1e-5
    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == 2


def test_non_empty_destination_is_refused_and_failed_saves_leave_nothing(tiny_llm, tmp_path, monkeypatch):
    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not empty; pass --overwrite"):
        export_model(model, occupied)
    assert [path.name for path in occupied.iterdir()] == ["keep.txt"]

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_model(model, tmp_path / "fresh")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["occupied"]


def test_cli_prune_writes_a_loadable_folder_and_rejects_bad_input(tiny_llm, tmp_path, capsys):
    folder = str(tiny_llm("phi3", layers=4))
    output = tmp_path / "pruned"
    assert cli_main(["prune", folder, "--fraction", "0.5", "--pooling", "mean", "--output", str(output)]) == 0
    assert "kept 2/4 layers" in capsys.readouterr().out
    embeddings, _ = encode_in_plain_process(output, TEXTS, tmp_path)
    assert embeddings.shape == (3, 32)

    assert cli_main(["prune", folder, "--fraction", "0.5", "--output", str(output)]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    for bad in (["--layers", "0"], ["--layers", "9"], []):
        assert cli_main(["prune", folder, *bad, "--output", str(tmp_path / "never")]) == 2
        assert capsys.readouterr().err.count("\n") == 1  # one line
    assert not (tmp_path / "never").exists()
