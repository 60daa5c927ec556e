"""One definition per training setting (issue 24 item 3): ``TrainingConfig`` (st_prune.training.config) is the library's
settings, the recipe's ``training:`` section and ``st-prune train``'s flags. No model is built here."""

from __future__ import annotations

import dataclasses

import pytest

from st_prune.cli import build_parser
from st_prune.commands.train import RECIPE_ONLY, build_config, training_flags
from st_prune.errors import StPruneError
from st_prune.pipeline import schema
from st_prune.training import TrainingConfig
from st_prune.training.config import LoraSpec, TrainingSpec, recipe_keys


def parse_train(*flags: str):
    return build_parser().parse_args(["train", "MODEL", "--data", "d.jsonl", "--layers", "1", "--output", "o", *flags])


def test_every_setting_is_a_flag_or_recipe_only():
    fields = [info.name for info in dataclasses.fields(TrainingConfig)]
    unreachable = [name for name in fields if name not in training_flags() and name not in RECIPE_ONLY]
    assert unreachable == [], f"add a flag for {unreachable} or list them in RECIPE_ONLY"
    for name, key in RECIPE_ONLY.items():  # recipe-only means a recipe can set it
        assert name in fields and schema._at(key.split("."))[0] is not None, key
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flags in training_flags().values():
        assert all(flag in help_text for flag in flags)


def test_the_recipe_section_is_the_same_settings_with_the_same_defaults():
    assert TrainingSpec().config() == TrainingConfig()
    # every recipe key is a TrainingConfig field, and each converts to it
    leaves = [f"lora.{info.name}" for info in dataclasses.fields(LoraSpec)]
    leaves += [info.name for info in dataclasses.fields(TrainingSpec) if info.name != "lora"]
    assert sorted(leaves) == sorted(recipe_keys().values())
    spec = TrainingSpec(steps=7, warmup_steps=2, bf16=False, lora=LoraSpec(r=4, alpha=8, target_modules=["q_proj"]))
    config = spec.config()
    assert (config.max_steps, config.warmup_steps, config.bf16, config.lora_r, config.lora_alpha) == (7, 2, False, 4, 8)
    assert config.lora_target_modules == ("q_proj",)
    # the recipe refuses what the library refuses, by the same range
    with pytest.raises(StPruneError, match="batch_size must be an integer of at least 2"):
        TrainingConfig(batch_size=1)
    with pytest.raises(StPruneError, match=r"training.batch_size must be at least 2"):
        schema.recipe_from_dict(
            {
                "name": "x",
                "base": {"model": "m"},
                "data": {"path": "p"},
                "card": {"license": "mit"},
                "training": {"batch_size": 1},
            }
        )


def test_automatic_settings_resolve_alike_for_recipe_and_library():
    library, recipe = TrainingConfig(), TrainingSpec().config()
    assert library.effective_warmup_steps == recipe.effective_warmup_steps == 300  # the paper's 300 of 1000
    assert TrainingConfig(max_steps=60).effective_warmup_steps == 18
    assert library.sequence_length() == 512 and library.sequence_length(64) == 64
    assert (library.bf16, library.gradient_checkpointing) == (None, None)  # the machine decides (trainer.use_bf16)
    # A warm-up left automatic keys as the steps it resolves to: the same training, the same stage key.
    assert TrainingSpec().key_settings() == TrainingSpec(warmup_steps=300).key_settings()
    assert TrainingSpec(steps=60).key_settings()["warmup_steps"] == 18


def test_train_flags_come_from_the_settings():
    config = build_config(parse_train())
    assert config == TrainingConfig()
    config = build_config(
        parse_train(
            "--lora-r",
            "8",
            "--lora-targets",
            "q_proj, v_proj",
            "--cached-loss",
            "--no-gather-across-devices",
            "--warmup-steps",
            "0",
            "--max-seq-length",
            "64",
            "--training-arguments",
            '{"gradient_accumulation_steps": 2}',
        )
    )
    assert (config.lora_r, config.lora_alpha, config.lora_target_modules) == (8, 16, ("q_proj", "v_proj"))
    assert (config.cached_loss, config.gather_across_devices, config.warmup_steps) == (True, False, 0)
    assert config.max_seq_length == 64 and config.training_arguments == {"gradient_accumulation_steps": 2}
    assert build_config(parse_train("--lora-r", "8", "--lora-alpha", "8")).lora_alpha == 8  # alpha = 2r only by default
    assert build_config(parse_train("--bf16")).bf16 is True
    assert build_config(parse_train("--lora-dropout", "0.1", "--scale", "20")).scale == 20.0
    # A bad value names its flag, the range from the field.
    with pytest.raises(StPruneError, match=r"^--max-steps must be an integer of at least 1, got 0$"):
        build_config(parse_train("--max-steps", "0"))
    with pytest.raises(StPruneError, match=r"^--lora-dropout must be in \[0, 1\)"):
        build_config(parse_train("--lora-dropout", "1.5"))


# Train keys (layers=5) of every shipped recipe's variants, computed by the code before the settings were one model:
# a run folder it made resumes with its train stage (and everything after it) skipped.
SHIPPED_TRAIN_KEYS = {
    "gemma-2-9b-it/large": "fca49222050d724f",
    "gemma-2-9b-it/small": "fca49222050d724f",
    "gemma-3-270m-cpu/large": "e89c027d7889e678",
    "gemma-3-270m-cpu/small": "2b77c72600b05f70",
    "llama-3-8b-instruct/large": "b2ff42d584939df7",
    "llama-3-8b-instruct/small": "b2ff42d584939df7",
    "llama-3.1-8b-instruct/large": "23bd82910e5f6fcf",
    "llama-3.1-8b-instruct/small": "23bd82910e5f6fcf",
    "mistral-7b-instruct-v0.2/large": "344fbe7716d4120f",
    "mistral-7b-instruct-v0.2/small": "344fbe7716d4120f",
    "phi-3-mini-4k-instruct/large": "8f0204139f087bec",
    "phi-3-mini-4k-instruct/small": "8f0204139f087bec",
    "qwen2-7b-instruct/large": "d972f2c5460415ab",
    "qwen2-7b-instruct/small": "d972f2c5460415ab",
    "qwen2.5-7b-instruct/large": "c590edc9eec7342f",
    "qwen2.5-7b-instruct/small": "c590edc9eec7342f",
    "qwen3-8b/large": "6e632f764ce33f35",
    "qwen3-8b/small": "6e632f764ce33f35",
    "qwen3-embedding-0.6b/large": "dbae5ee732d66f62",  # issue 25: recover: distill (in the key only when set)
    "qwen3-embedding-0.6b/small": "dbae5ee732d66f62",
    "smollm2-135m-instruct-cpu/large": "e9663563cdb9652b",
    "smollm2-135m-instruct-cpu/small": "1864d091e86ec261",
}
# A recipe that leaves every training key out, keyed by that code on a machine without CUDA (layers=3).
MINIMAL = {"name": "x", "base": {"model": "m"}, "data": {"path": "p"}, "card": {"license": "mit"}}
MINIMAL_TRAIN_KEY = "035be2401cb098bd"


def test_stage_keys_of_earlier_runs_stay_where_the_training_is_the_same(monkeypatch):
    import torch

    from st_prune.pipeline.recipe import load_recipe, shipped_recipes
    from st_prune.pipeline.stages import BY_NAME

    def train_key(recipe, variant, layers):
        return BY_NAME["train"].key(recipe, variant, layers)

    keys = {
        f"{path.stem}/{variant.name}": train_key(recipe, variant, 5)
        for path in shipped_recipes()
        for recipe in [load_recipe(path)]
        for variant in recipe.variants
    }
    assert keys == SHIPPED_TRAIN_KEYS
    # Left out, warm-up, bf16 and gradient checkpointing resolve (300 of 1000 steps; off without CUDA) to the old
    # recipe defaults, so the key is the old one; on a CUDA GPU they train otherwise (bf16 on) and key otherwise.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = schema.recipe_from_dict(dict(MINIMAL))
    assert train_key(recipe, recipe.variants[0], 3) == MINIMAL_TRAIN_KEY
    assert recipe.training.key_settings()["bf16"] is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert recipe.training.key_settings()["bf16"] is True
    assert train_key(recipe, recipe.variants[0], 3) != MINIMAL_TRAIN_KEY
