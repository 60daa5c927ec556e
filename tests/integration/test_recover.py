"""Issue 25.3: recovery by self-distillation. The uncut embedder is the teacher of its cut: it embeds the training texts
once (cached, resumable), and the cut learns those embeddings, plus the contrastive loss when the data has pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recipe_files import write_recipe
from sentence_transformers import SentenceTransformer
from tiny_embedders import make_tiny_embedder

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.model.truncated_llm import encoder_from_llm
from st_prune.training import TrainingConfig, self_distill
from st_prune.training.distillation import DistilledContrastiveLoss, mean_distance
from st_prune.training.trainer import train_pruned

TOPICS = ["banking", "gardening", "football", "cooking", "astronomy", "music", "travel", "chemistry"]
TEXTS = [
    f"A note about {topic}, number {index}: {topic} matters to people who like {topic}."
    for index in range(3)
    for topic in TOPICS
]  # 24 texts


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return make_tiny_embedder(tmp_path_factory.mktemp("recover") / "qwen3", "qwen3_last_token")


@pytest.fixture
def counted(monkeypatch):
    """How many texts the teacher embeds (each call of self_distill._encode)."""
    calls = []
    real = self_distill._encode

    def counting(teacher, items, batch_size):
        calls.append(len(items))
        return real(teacher, items, batch_size)

    monkeypatch.setattr(self_distill, "_encode", counting)
    return calls


def write_txt(path: Path, texts=TEXTS) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def run_cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    status = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("st-prune ")]
    return status, "\n".join(lines), captured.out


def distance_to_teacher(model: SentenceTransformer, teacher: SentenceTransformer, texts=TEXTS) -> float:
    """Mean cosine distance of ``model``'s embeddings of ``texts`` to the uncut teacher's (document prompt)."""
    prompt = self_distill.document_prompt(teacher) or ""
    ours = model.encode(texts, prompt=prompt, convert_to_tensor=True)
    theirs = teacher.encode(texts, prompt=prompt, convert_to_tensor=True)
    import torch

    return float(1 - torch.nn.functional.cosine_similarity(ours, theirs).mean())


FAST = {
    "max_steps": 12,
    "batch_size": 4,
    "learning_rate": 2e-3,
    "warmup_steps": 0,
    "save_steps": 100,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
}


def test_self_distillation_from_a_txt_file_lowers_the_distance_to_the_teacher(embedder, tmp_path, counted):
    """Python API: train_pruned(config=TrainingConfig(recover='distill')) on a .txt of unlabelled texts."""
    teacher = encoder_from_llm(str(embedder))
    before = distance_to_teacher(encoder_from_llm(str(embedder), layers=2), teacher)
    student = encoder_from_llm(str(embedder), layers=2)
    trained = train_pruned(
        student,
        write_txt(tmp_path / "docs.txt"),
        TrainingConfig(recover="distill", **FAST),
        work_dir=tmp_path / "work",
        teacher=teacher,
        keep_checkpoints=True,
    )
    after = distance_to_teacher(trained, teacher)
    assert after < 0.7 * before, (before, after)
    assert sum(counted) == len(TEXTS)  # every text embedded once by the teacher
    assert trained.st_prune_teacher_cost["texts"] == len(TEXTS)
    key = json.loads((tmp_path / "work" / self_distill.CACHE_DIR / "key.json").read_text())
    assert key["texts"] == len(TEXTS) and key["max_seq_length"] == student.max_seq_length and key["normalize"]


def test_cli_self_distillation_from_jsonl_text(embedder, tmp_path, capsys, counted):
    """`st-prune train --recover distill` on a JSONL text column; the export is closer to the teacher than the cut."""
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": text, "id": index}) + "\n" for index, text in enumerate(TEXTS)))
    flags = ["--max-steps", 12, "--batch-size", 4, "--learning-rate", 2e-3, "--warmup-steps", 0, "--lora-r", 8]
    status, err, out = run_cli(
        [
            "train",
            embedder,
            "--data",
            data,
            "--layers",
            2,
            "--recover",
            "distill",
            *flags,
            "--output",
            tmp_path / "out",
        ],
        capsys,
    )
    assert status == 0, err
    assert f"teacher: the uncut model (4 layers), {len(TEXTS)} texts embedded in" in out
    teacher = SentenceTransformer(str(embedder))
    exported = SentenceTransformer(str(tmp_path / "out"))
    assert exported[0].auto_model.config.num_hidden_layers == 2
    assert distance_to_teacher(exported, teacher) < 0.7 * distance_to_teacher(
        encoder_from_llm(str(embedder), layers=2), teacher
    )
    assert not (tmp_path / "out.work").exists()  # the cache went with the checkpoints once exported
    cost = json.loads((tmp_path / "out" / "teacher.json").read_text())
    assert cost["texts"] == len(TEXTS) and cost["teacher_layers"] == 4 and not cost["cached"]


def test_the_cache_is_reused_resumed_and_refused_when_stale(embedder, tmp_path, counted):
    teacher = encoder_from_llm(str(embedder))
    cache = tmp_path / "cache"
    first, cost = self_distill.self_distillation_data(
        teacher, TEXTS, cache, identity="tiny", batch_size=4, progress=False
    )
    assert sum(counted) == len(TEXTS) and not cost.cached
    counted.clear()
    again, cost = self_distill.self_distillation_data(
        teacher, TEXTS, cache, identity="tiny", batch_size=4, progress=False
    )
    assert counted == [] and cost.cached  # no teacher forward on the second run
    assert again.datasets["train"]["label"] == first.datasets["train"]["label"]

    # A kill during embedding leaves whole chunks only: a re-run embeds the missing ones alone.
    chunked = tmp_path / "chunked"
    self_distill.teacher_embeddings(
        teacher, [(None, t) for t in TEXTS], chunked, identity="tiny", chunk_size=10, progress=False
    )
    (chunked / "chunk-00002.npy").unlink()
    counted.clear()
    self_distill.teacher_embeddings(
        teacher, [(None, t) for t in TEXTS], chunked, identity="tiny", chunk_size=10, progress=False
    )
    assert counted == [4]

    # Another model's or another length's embeddings: refused (one line naming the fix), or rebuilt on request.
    with pytest.raises(
        StPruneError,
        match=r"holds teacher embeddings of another teacher \('tiny', now 'other'\): "
        r"delete .*cache to embed again",
    ):
        self_distill.self_distillation_data(teacher, TEXTS, cache, identity="other", batch_size=4, progress=False)
    teacher.max_seq_length = 16
    with pytest.raises(StPruneError, match="another max_seq_length"):
        self_distill.self_distillation_data(teacher, TEXTS, cache, identity="tiny", batch_size=4, progress=False)
    counted.clear()
    self_distill.self_distillation_data(
        teacher, TEXTS, cache, identity="tiny", batch_size=4, progress=False, stale="rebuild"
    )
    assert sum(counted) == len(TEXTS)
    assert json.loads((cache / "key.json").read_text())["max_seq_length"] == 16


def test_pairs_train_on_contrastive_plus_distance(embedder, tmp_path):
    """Data with pairs: the teacher embeds every column and the loss is InfoNCE + the distance to the teacher."""
    rows = [{"anchor": f"what is {t}?", "positive": f"{t} is a topic people write about"} for t in TOPICS]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    teacher = encoder_from_llm(str(embedder))
    labelled, cost = self_distill.self_distillation_data(
        teacher, str(data), tmp_path / "cache", identity="tiny", batch_size=4, progress=False
    )
    assert cost.texts == 2 * len(rows)
    dataset = labelled.datasets["train"]
    assert len(dataset[0]["label"]) == 2  # (columns, dimension) per row
    # the teacher embedded the anchor with the embedder's query prompt, the positive with its document prompt
    query = teacher.encode([rows[0]["anchor"]], prompt=labelled.prompt("train", "anchor") or "")[0]
    assert abs(sum(a * b for a, b in zip(query, dataset[0]["label"][0], strict=True)) - 1) < 1e-4
    # Against the contrastive loss alone, the same steps on the same pairs: the distance term keeps the cut nearer.
    distilled = train_pruned(
        str(embedder), str(data), TrainingConfig(recover="distill", **FAST), tmp_path / "o1", layers=2
    )  # the teacher: the full-depth model at that path
    assert not (tmp_path / "o1.work").exists()  # the teacher's cache went with the checkpoints once exported
    plain_rows = labelled.datasets["train"].remove_columns("label")
    contrastive = train_pruned(
        encoder_from_llm(str(embedder), layers=2), plain_rows, TrainingConfig(**FAST), work_dir=tmp_path / "w2"
    )
    assert mean_distance(distilled, labelled) < mean_distance(contrastive, labelled)
    student = encoder_from_llm(str(embedder), layers=2)
    parts = _last_parts(student, labelled)  # a batch of pairs reports both terms
    assert set(parts) == {"contrastive", "distill"} and parts["contrastive"] > 0


def _last_parts(model, data) -> dict[str, float]:
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    loss = DistilledContrastiveLoss(MultipleNegativesRankingLoss(model))
    dataset = data.datasets["train"]
    columns = [c for c in dataset.column_names if c != "label"]
    features = [model.tokenize(dataset[c][:4]) for c in columns]
    loss(features, torch.tensor(dataset["label"][:4]))
    return loss.last_parts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n  \n", "docs.txt holds no text: write one text a line"),
        ("", "docs.txt holds no text: write one text a line"),
    ],
)
def test_an_empty_text_file_is_one_line(embedder, tmp_path, capsys, content, message):
    data = tmp_path / "docs.txt"
    data.write_text(content)
    status, err, _ = run_cli(
        ["train", embedder, "--data", data, "--layers", 2, "--recover", "distill", "--output", tmp_path / "out"], capsys
    )
    assert status == 2 and len(err.splitlines()) == 1 and message in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["docs.txt"]  # nothing written


def test_a_stale_cache_in_the_work_folder_is_refused(embedder, tmp_path, capsys, monkeypatch):
    """A run stopped after the teacher embedded its texts leaves the cache in DIR.work; a re-run with another
    --max-seq-length finds it stale: one line naming the fix, exit 2, nothing written."""
    from st_prune.training import trainer

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    data = write_txt(tmp_path / "docs.txt")
    argv = [
        "train",
        embedder,
        "--data",
        data,
        "--layers",
        2,
        "--recover",
        "distill",
        "--batch-size",
        4,
        "--output",
        tmp_path / "out",
    ]
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "train_pruned", stop)  # Ctrl-C once the teacher's embeddings are cached
        assert run_cli(argv, capsys)[0] == 130
    work = tmp_path / "out.work"
    assert (work / self_distill.CACHE_DIR / "key.json").is_file()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in work.rglob("*"))
    status, err, _ = run_cli([*argv, "--max-seq-length", 16], capsys)
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "holds teacher embeddings of another max_seq_length (96, now 16)" in err, err
    assert "delete" in err and "--overwrite" in err, err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in work.rglob("*")) == before
    assert not (tmp_path / "out").exists()


def test_recover_is_a_training_setting():
    with pytest.raises(StPruneError, match="distillation shares the student's embeddings"):
        TrainingConfig(recover="distill", cached_loss=True)
    with pytest.raises(StPruneError, match="recover must be distill or None"):
        TrainingConfig(recover="yes")
    assert TrainingConfig(recover="distill").effective_distill_weight == 1.0
    assert TrainingConfig().effective_distill_weight == 0
    from st_prune.cli import build_parser
    from st_prune.commands.train import build_config

    args = build_parser().parse_args(
        [
            "train",
            "M",
            "--data",
            "d.txt",
            "--layers",
            "1",
            "--output",
            "o",
            "--recover",
            "distill",
            "--distill-distance",
            "mse",
        ]
    )
    config = build_config(args)
    assert (config.recover, config.distill_distance) == ("distill", "mse")


def test_a_recipe_with_recover_distill_runs_end_to_end_and_resumes(embedder, tmp_path, counted):
    """`recover: distill`: the train stage learns the uncut base's embeddings (computed once for every variant), the
    card states the teacher's cost, and a second run skips every stage."""
    from st_prune.pipeline.recipe import load_recipe
    from st_prune.pipeline.runner import RecipeRunner
    from st_prune.pipeline.stages.train import TRAIN

    variants = [{"name": "small", "layers": 2}, {"name": "large", "layers": 3}]
    # 64 tokens: the tiny tokenizer spells the embedder's "Instruct: ...\nQuery:" prompts nearly a token a character
    path = write_recipe(tmp_path, embedder, variants=variants, recover="distill", base__max_seq_length=64)
    recipe = load_recipe(path)
    assert recipe.recover == "distill"
    runner = RecipeRunner(recipe, tmp_path / "run", log=lambda _: None)
    runner.run()
    assert runner.calls["train"] == 2
    texts = sum(counted)
    assert texts == 24 * 3  # 24 triplets, three columns each, embedded once for both variants
    small = recipe.variants[0]
    record = runner.ctx.folder.record("small", "train.json", stage="train")
    assert record["distillation"]["self"] and record["distillation"]["teacher_layers"] == 4
    assert record["distillation"]["teacher_texts"] == texts
    card = runner.ctx.export_dir(small) / "README.md"
    assert f"| Teacher's cost | {texts} training texts embedded once by the uncut base in" in card.read_text()
    assert "self-distillation: + 1 × cosine distance to the embeddings of the uncut base (4 layers)" in card.read_text()

    again = RecipeRunner(load_recipe(path), tmp_path / "run", log=lambda _: None)
    again.run()
    assert again.calls == {}  # every stage skipped

    # The train key names the recovery only when it is set: recipes without it keep their keys.
    plain = load_recipe(write_recipe(tmp_path, embedder, variants=variants))
    assert TRAIN.key(recipe, small, 2) != TRAIN.key(plain, small, 2)
    assert plain.digest() != recipe.digest()
    with pytest.raises(StPruneError, match="recover: distill and the distill section both give the students a teacher"):
        load_recipe(
            write_recipe(
                tmp_path,
                embedder,
                variants=variants,
                recover="distill",
                distill={"teacher": "large", "variants": ["small"]},
            )
        )


def test_the_qwen3_embedding_recipe_plans_offline(embedder, tmp_path, capsys, monkeypatch):
    """Issue 25.6: the shipped GPU recipe. Offline without the base cached, its dry run plans on the recipe's
    base.layers and says why (as every GPU recipe's does); on a local stand-in of the same layout it checks the base."""
    import huggingface_hub.constants

    from st_prune.pipeline.recipe import load_recipe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as a user's variable reads at import
    recipe = load_recipe("qwen3-embedding-0.6b")
    assert (recipe.base.model, recipe.base.kind, recipe.base.layers) == (
        "Qwen/Qwen3-Embedding-0.6B",
        "sentence-transformers",
        28,
    )
    assert recipe.recover == "distill" and {v.pick for v in recipe.variants} == {"small", "large"}
    out = tmp_path / "out"
    for name in ("qwen3-embedding-0.6b", "llama-3-8b-instruct"):
        status, err, plan = run_cli(["run", name, "--dry-run", "--output", out], capsys)
        assert status == 0 and "plan:" in plan, err
        if "note:" in plan:  # the base is not in this machine's Hugging Face cache: planned on base.layers
            assert "note: depths checked against base.layers = " in plan and "download it first" in plan, plan
    status, err, plan = run_cli(
        [
            "run",
            "qwen3-embedding-0.6b",
            "--dry-run",
            "--output",
            out,
            "--set",
            f"base.model={embedder}",
            "--set",
            "base.layers=4",
        ],
        capsys,
    )
    assert status == 0, err
    assert "train     [small: small, 1000 steps, self-distilled from the uncut base] (to run)" in plan, plan
    assert "recover: distill" in plan and "kind: sentence-transformers" in plan
    assert not out.exists()
