"""The GPU check's shipped configs match their recipes' vocabularies and the published sizes (meta device)."""

from __future__ import annotations

import json

from gpu_check import ARCHITECTURES, CONFIGS, PUBLISHED_SIZES


def test_shipped_configs_match_their_recipes_vocabularies_and_published_sizes(tmp_path):
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from st_prune.pipeline.recipe import load_recipe

    for name in ARCHITECTURES:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copyfile(CONFIGS / name / "config.json", folder / "config.json")
        with torch.device("meta"):  # shapes only: no memory, no time
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
        assert round(sum(parameter.numel() for parameter in model.parameters()) / 1e9, 2) == PUBLISHED_SIZES[name], name
        config = json.loads((CONFIGS / name / "config.json").read_text())
        essentials = json.loads((CONFIGS / name / "tokenizer_essentials.json").read_text())
        assert load_recipe(name).base.layers == config["num_hidden_layers"], name
        assert config["eos_token_id"] == essentials["eos_token_id"], name
        special_ids = [
            essentials[f"{kind}_token_id"] for kind in ("bos", "eos", "pad", "unk") if essentials[f"{kind}_token"]
        ] + list(essentials["other_special_tokens"].values())
        assert all(0 <= token_id < config["vocab_size"] for token_id in special_ids), name
