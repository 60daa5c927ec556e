"""Issue 25: a trained embedder's instructions in its own format. A cut of Qwen3-Embedding (query prompt
``Instruct: ...\\nQuery:``) is scanned, trained, width-ranked and evaluated with ``Instruct: {instruction}\\nQuery:``
prompts, the format it was trained on, not st-prune's ``"{instruction} →"``; a base LLM keeps st-prune's."""

from __future__ import annotations

import pytest
from datasets import Dataset
from evaluation_tasks import stsbenchmark_in_memory
from recipe_files import write_recipe
from tiny_embedders import MISTRAL_PROMPTS, QWEN3_PROMPTS, make_tiny_embedder
from tiny_models import make_tiny_llm
from training_rows import triplet_rows

import st_prune.l3prune.scan as scan_module
from st_prune import L3Prune, encoder_from_llm
from st_prune.data.training_data import to_training_data
from st_prune.evaluation.prompts import build_task_prompts
from st_prune.pipeline.context import RunContext
from st_prune.pipeline.recipe import load_recipe
from st_prune.pipeline.run_folder import RunFolder
from st_prune.pipeline.stages.trim import training_corpus
from st_prune.training.config import TrainingConfig
from st_prune.training.trainer import build_trainer

INSTRUCTION = "Retrieve semantically similar text"
QWEN3_FORMAT = f"Instruct: {INSTRUCTION}\nQuery:"


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return make_tiny_embedder(tmp_path_factory.mktemp("embedders") / "qwen3", "qwen3_last_token")


def rows(count: int = 8) -> Dataset:
    return Dataset.from_list(triplet_rows(count, instruction=INSTRUCTION + "."))


def test_training_a_cut_embedder_uses_its_instruction_format(qwen3, tmp_path):
    model = encoder_from_llm(str(qwen3), layers=2)
    trainer = build_trainer(model, rows(), TrainingConfig(max_steps=1, batch_size=4), tmp_path / "work")
    data = trainer.training_data
    assert {data.prompt(name, "anchor") for name in data.datasets} == {QWEN3_FORMAT}


def test_training_a_base_llm_keeps_st_prunes_format(tmp_path):
    model = encoder_from_llm(str(make_tiny_llm(tmp_path / "llm", "llama", 2)))
    trainer = build_trainer(model, rows(), TrainingConfig(max_steps=1, batch_size=4), tmp_path / "work")
    data = trainer.training_data
    assert {data.prompt(name, "anchor") for name in data.datasets} == {f"{INSTRUCTION} →"}


def test_the_scan_of_an_embedder_uses_its_instruction_format(qwen3, monkeypatch):
    seen = {}

    def record(model, batches, **kwargs):
        seen["prompts"] = {prompt for batch in batches for prompt in batch.prompts.values() if prompt}
        return "scanned"

    monkeypatch.setattr(scan_module, "scan", record)
    result = L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).select(encoder_from_llm(str(qwen3)), rows())
    assert result == "scanned" and seen["prompts"] == {QWEN3_FORMAT}


def test_evaluation_prompts_follow_the_models_format():
    task = stsbenchmark_in_memory()
    name = task.metadata.name
    assert build_task_prompts([task], model_prompts=QWEN3_PROMPTS)[name].startswith("Instruct: ")
    assert build_task_prompts([task], model_prompts=QWEN3_PROMPTS)[name].endswith("\nQuery:")
    # e5-mistral's prompt ends "Query: ": the space is its format too.
    assert build_task_prompts([task], model_prompts=MISTRAL_PROMPTS)[name].endswith("\nQuery: ")
    assert build_task_prompts([task], model_prompts={"query": "Find it →"})[name].endswith(" →")


def test_a_recipe_on_an_embedder_reads_its_data_in_the_embedders_format(qwen3, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, qwen3, variants=[{"name": "a", "layers": 2}]))
    ctx = RunContext(recipe, RunFolder(tmp_path / "run"))
    assert ctx.instruction_template() == "Instruct: {instruction}\nQuery:"
    source = ctx.training_source()  # the recipe's triplets: task "pairs" has its own instruction
    prepared = to_training_data(source.data, source.prompts, ctx.instruction_template())
    prompts = {prepared.prompt(name, "anchor") for name in prepared.datasets}
    expected = "Instruct: Retrieve matching pairs\nQuery:"
    assert expected in prompts and all(p.startswith("Instruct: ") and p.endswith("\nQuery:") for p in prompts)
    assert expected in training_corpus(ctx.rows(), [], ctx.instruction_template())  # what a trimmed vocabulary keeps
