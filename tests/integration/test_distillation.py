"""Distillation of a stronger variant's embeddings alongside InfoNCE (st_prune.training.distillation), on tiny models."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from recipe_files import write_recipe
from training_rows import FAST, triplet_rows

from st_prune import encoder_from_llm
from st_prune.errors import StPruneError
from st_prune.training.distillation import DistilledContrastiveLoss, add_teacher_embeddings, mean_distance
from st_prune.training.trainer import TrainingConfig, build_loss, build_trainer, prepare_training_data

INSTRUCTION = "Retrieve semantically similar text"


@pytest.fixture()
def models(tiny_llm):
    folder = str(tiny_llm("llama", layers=4))
    teacher = encoder_from_llm(folder, layers=4, max_seq_length=64)
    student = encoder_from_llm(folder, layers=2, max_seq_length=64)
    return teacher, student


def distill_data(teacher, rows: int = 16):
    data = prepare_training_data(Dataset.from_list(triplet_rows(rows, INSTRUCTION)), batch_size=4)
    return add_teacher_embeddings(teacher, data)


def test_labels_are_the_teachers_embeddings_of_each_column_with_the_trainers_prompt(models):
    teacher, _ = models
    data = distill_data(teacher)
    ((name, dataset),) = data.datasets.items()
    assert dataset.column_names == ["anchor", "positive", "negative", "label"]
    labels = torch.tensor(dataset["label"])
    assert labels.shape == (16, 3, teacher.get_embedding_dimension())
    prompt = data.prompts[name]["anchor"]
    expected_anchor = teacher.encode(dataset["anchor"], prompt=prompt, convert_to_tensor=True)
    expected_negative = teacher.encode(dataset["negative"], convert_to_tensor=True)
    assert torch.allclose(labels[:, 0], expected_anchor, atol=1e-5)
    assert torch.allclose(labels[:, 2], expected_negative, atol=1e-5)
    plain_anchor = teacher.encode(dataset["anchor"], convert_to_tensor=True)
    assert not torch.allclose(labels[:, 0], plain_anchor, atol=1e-3)  # the instruction was applied


def test_loss_is_contrastive_plus_weighted_distance_from_one_forward_pass(models, tmp_path):
    teacher, student = models
    config = TrainingConfig(**FAST)
    trainer = build_trainer(student, distill_data(teacher), config, output_dir=tmp_path / "run")
    contrastive = trainer.loss
    loss = DistilledContrastiveLoss(contrastive, weight=0.5)
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(4)])
    features, labels = trainer.collect_features(batch)
    student.eval()
    with torch.no_grad():
        combined = float(loss(features, labels))
        plain = float(contrastive(features, None))
    parts = loss.last_parts
    assert parts["contrastive"] == pytest.approx(plain, rel=1e-5)
    assert parts["distill"] > 0
    assert combined == pytest.approx(plain + 0.5 * parts["distill"], rel=1e-5)


def test_training_with_distillation_moves_the_student_towards_the_teacher(models, tmp_path):
    teacher, student = models
    data = distill_data(teacher, rows=32)
    before = mean_distance(student, data)
    config = TrainingConfig(**{**FAST, "max_steps": 12, "learning_rate": 5e-3, "distill_weight": 4.0})
    trainer = build_trainer(student, data, config, output_dir=tmp_path / "run")
    assert isinstance(trainer.loss, DistilledContrastiveLoss) and trainer.loss.weight == 4.0
    trainer.train()
    after = mean_distance(student, data)
    assert after < before * 0.9, (before, after)


def test_bad_setups_fail_with_one_line(models, tmp_path):
    teacher, student = models
    contrastive = build_loss(student, TrainingConfig(**FAST))
    with pytest.raises(StPruneError, match="weight must be above 0"):
        DistilledContrastiveLoss(contrastive, weight=0)
    with pytest.raises(StPruneError, match="distance must be one of"):
        DistilledContrastiveLoss(contrastive, distance_metric="dot")
    data = distill_data(teacher)
    with pytest.raises(StPruneError, match="already has a 'label' column"):
        add_teacher_embeddings(teacher, data)
    plain = prepare_training_data(Dataset.from_list(triplet_rows(16, INSTRUCTION)), batch_size=4)
    with pytest.raises(StPruneError, match="needs the teacher's embeddings in the data"):
        build_trainer(student, plain, TrainingConfig(**FAST, distill_weight=1.0), output_dir=tmp_path / "x")
    with pytest.raises(StPruneError, match="distill_weight must be 0"):
        TrainingConfig(distill_weight=-1.0)


# ------------------------------------------------------------------------------ the recipe option
def distill_recipe(folder, tiny_model, **distill):

    return write_recipe(folder, tiny_model, distill={"teacher": "large", "variants": ["small"], **distill})


def test_recipe_distill_section_is_checked_and_keys_follow_the_teacher(tmp_path, tiny_llm):
    from st_prune.pipeline.recipe import load_recipe
    from st_prune.pipeline.stages.train import TRAIN

    path = distill_recipe(tmp_path, tiny_llm("llama", layers=4))
    recipe = load_recipe(path)
    small, large = recipe.variants
    assert recipe.teacher_of(small) == large and recipe.teacher_of(large) is None
    assert [v.name for v in recipe.training_order()] == ["large", "small"]

    def train_keys(overrides):
        changed = load_recipe(path, overrides)
        return [TRAIN.key(changed, variant, 2) for variant in changed.variants]

    small_key, large_key = train_keys([])
    # The teacher's own training changes the student's key; the distillation weight changes the student's only.
    assert train_keys(["variants.1.steps=7"])[0] != small_key
    assert train_keys(["distill.weight=2.0"]) == [train_keys(["distill.weight=2.0"])[0], large_key]
    assert train_keys(["distill.weight=2.0"])[0] != small_key
    without = load_recipe(path, ["distill=null"])
    assert TRAIN.key(without, without.variants[0], 2) != small_key
    for override, message in [
        ("distill.teacher=huge", "distill.teacher names 'huge'"),
        ("distill.variants=[large]", "cannot learn from itself"),
        ("distill.weight=-1", "distill.weight must be a positive number"),
    ]:
        with pytest.raises(StPruneError, match=message):
            load_recipe(path, [override])


def test_run_trains_the_teacher_first_and_the_student_on_its_embeddings(tmp_path, tiny_llm):
    import json

    from st_prune.pipeline.recipe import load_recipe
    from st_prune.pipeline.runner import RecipeRunner

    path = distill_recipe(tmp_path, tiny_llm("llama", layers=4), weight=2.0)
    lines: list[str] = []
    runner = RecipeRunner(load_recipe(path), tmp_path / "run", log=lines.append)
    runner.run()
    trained = [line for line in lines if "train" in line and ("[small]" in line or "[large]" in line)]
    order = [("large" if "[large]" in line else "small") for line in trained]
    assert order and order[0] == "large", lines
    assert any("teacher large" in line and "embedded" in line for line in lines), lines
    record = json.loads((tmp_path / "run" / "work" / "small" / "train.json").read_text())
    assert record["distillation"]["teacher"] == "large" and record["distillation"]["weight"] == 2.0
    assert record["distillation"]["teacher_layers"] == runner.ctx.layers_of(runner.recipe.variants[1])
    assert "distillation" not in json.loads((tmp_path / "run" / "work" / "large" / "train.json").read_text())
    small, large = runner.recipe.variants
    card = (runner.ctx.zoo_dir(small) / "README.md").read_text()
    assert "| Distillation | + 2 × cosine distance to the embeddings of the trained `large` variant" in card
    assert "| Distillation |" not in (runner.ctx.zoo_dir(large) / "README.md").read_text()
