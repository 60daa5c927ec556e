"""TruncatedLLM: exact cuts for every decoder family, consistent configs, tokenizer set-up, bad input."""

from __future__ import annotations

import pytest
import torch
from tiny_models import FAMILIES, make_tiny_bert
from transformers import AutoModel
from truncated_llm import TEXTS, reference_embeddings

from st_prune import StPruneError, TruncatedLLM, encoder_from_llm
from st_prune.model import architectures


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cut_model_equals_final_norm_of_layer_k(tiny_llm, family):
    folder = tiny_llm(family, layers=4)
    for kept in (1, 3):
        model = encoder_from_llm(str(folder), layers=kept, normalize=False)
        ours = model.encode(TEXTS, convert_to_tensor=True)
        expected = reference_embeddings(folder, kept)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cut_is_physical_and_config_consistent(tiny_llm, family, tmp_path):
    folder = tiny_llm(family, layers=4)
    full = TruncatedLLM(str(folder))
    cut = TruncatedLLM(str(folder), layers=2)
    assert (full.num_layers, cut.num_layers, cut.num_original_layers) == (4, 2, 4)

    # Parameters fall by exactly the two dropped layers.
    per_layer = sum(p.numel() for p in architectures.decoder_layers(full.auto_model)[3].parameters())
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in cut.parameters()) == 2 * per_layer
    assert not any(".layers.2." in name or name.startswith("layers.2.") for name in cut.auto_model.state_dict())

    config = cut.config
    assert config.num_hidden_layers == 2
    for key in ("layer_types", "no_rope_layers"):
        if getattr(config, key, None) is not None:
            assert len(getattr(config, key)) == 2, key
    if isinstance(getattr(config, "max_window_layers", None), int):
        assert config.max_window_layers <= 2
    # The cut model saves and reloads with plain transformers.
    cut.auto_model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert len(architectures.decoder_layers(reloaded)) == 2


def test_fraction_follows_the_papers_rule(tiny_llm):
    folder = tiny_llm("llama", layers=4)
    assert TruncatedLLM(str(folder), fraction=0.3).num_layers == int(4 * (1 - 0.3)) == 2
    assert TruncatedLLM(str(folder), fraction=0.0).num_layers == 4
    assert [architectures.layers_to_keep(32, fraction=p) for p in (0.25, 0.5, 0.74)] == [24, 16, 8]


def test_in_place_cut_matches_fresh_cut(tiny_llm):
    folder = tiny_llm("qwen2", layers=4)
    fresh = encoder_from_llm(str(folder), layers=2)
    in_place = encoder_from_llm(str(folder))
    in_place[0].cut(2)
    assert in_place[0].config.layer_types == fresh[0].config.layer_types
    torch.testing.assert_close(
        in_place.encode(TEXTS, convert_to_tensor=True), fresh.encode(TEXTS, convert_to_tensor=True), atol=1e-6, rtol=0
    )


def test_tokenizer_setup_pad_eos_and_no_chat_template(tiny_llm):
    folder = tiny_llm("llama", layers=2)
    model = encoder_from_llm(str(folder), pooling="last_token")
    tokenizer = model.tokenizer
    assert tokenizer.chat_template  # the trap is present ...
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    ids = model.tokenize(["Two dogs"])["input_ids"][0].tolist()
    # ... and plain text still goes through the tokenizer alone: BOS, the text, EOS; no chat markup.
    plain = tokenizer("Two dogs", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.bos_token_id, *plain, tokenizer.eos_token_id]
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") not in ids

    no_eos = encoder_from_llm(str(folder), pooling="weighted_mean")
    assert no_eos.tokenize(["Two dogs"])["input_ids"][0].tolist() == [tokenizer.bos_token_id, *plain]


def test_prompts_are_excluded_from_pooling(tiny_llm):
    folder = tiny_llm("mistral", layers=2)
    prompt = "Instruct: Retrieve semantically similar text\nQuery: "
    model = encoder_from_llm(str(folder), pooling="mean", normalize=False)
    with_prompt = model.encode(["Two dogs"], prompt=prompt, convert_to_tensor=True)
    # Mean over the text's own token states, computed by hand from a forward of prompt + text.
    tokenizer = model.tokenizer
    full_ids = tokenizer(prompt + "Two dogs", return_tensors="pt")["input_ids"]
    prompt_length = len(tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        states = model[0].auto_model(input_ids=full_ids).last_hidden_state[0]
    torch.testing.assert_close(with_prompt[0], states[prompt_length:].mean(0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(with_prompt, model.encode(["Two dogs"], convert_to_tensor=True), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": 0}, r"layers must be an integer in \[1, 4\]"),
        ({"layers": 5}, r"layers must be an integer in \[1, 4\]"),
        ({"fraction": -0.1}, r"fraction must be in \[0, 1\)"),
        ({"fraction": 1.0}, r"fraction must be in \[0, 1\)"),
        ({"fraction": 0.9}, r"keeps int\(4 \* \(1 - 0.9\)\) = 0 of 4 layers"),
        ({"layers": 2, "fraction": 0.5}, "either layers=K or fraction=P, not both"),
    ],
)
def test_bad_depths_are_refused(tiny_llm, kwargs, message):
    with pytest.raises(StPruneError, match=message):
        TruncatedLLM(str(tiny_llm("llama", layers=4)), **kwargs)


def test_encoder_only_and_unknown_layouts_are_refused(tmp_path):

    with pytest.raises(StPruneError, match="'bert' is an encoder-only model"):
        TruncatedLLM(str(make_tiny_bert(tmp_path / "bert")))
    with pytest.raises(StPruneError, match="cannot find the decoder layer stack"):
        architectures.decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_bad_gguf_files_are_refused(tmp_path):
    with pytest.raises(StPruneError, match="GGUF file not found"):
        TruncatedLLM(str(tmp_path / "missing.gguf"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(StPruneError, match="cannot read or dequantize broken.gguf"):
        TruncatedLLM(str(broken))
