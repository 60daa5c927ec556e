"""Evaluation, ModelMeta, reports and submission files, on a tiny random Llama encoder; offline and fast.

One module-scoped evaluation runs every local task type plus an MTEB task (STSBenchmark, with its data supplied
in memory so nothing is downloaded); most tests read what it wrote.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before mteb / datasets read it

import mteb  # noqa: E402
import torch  # noqa: E402
from evaluation_tasks import TASK_ROWS, stsbenchmark_in_memory, write_jsonl
from mteb.models import ModelMeta  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast  # noqa: E402

from st_prune import cli
from st_prune.errors import StPruneError  # noqa: E402
from st_prune.evaluation.evaluate import evaluate_model  # noqa: E402
from st_prune.evaluation.local_tasks import load_local_task  # noqa: E402
from st_prune.evaluation.model_meta import build_model_meta, resolve_model_identity  # noqa: E402
from st_prune.evaluation.prompts import INSTRUCTION_TEMPLATE  # noqa: E402
from st_prune.evaluation.results import (  # noqa: E402
    VariantScore,
    load_variant_score,
    plot_score_vs_parameters,
    results_table_markdown,
)
from st_prune.evaluation.submission import prepare_submission  # noqa: E402

HIDDEN = 32
CORPUS = [
    "the cat sat on the mat",
    "a dog runs in the park",
    "stocks fell sharply today",
    "the market rallied after the news",
    "a kitten sleeps in the sun",
    "the dog barks at the mailman",
    "prices rose in early trading",
    "investors sold their shares",
    "Retrieve semantically similar text",
]

# ----------------------------------------------------------------------------------------------------------------
# A tiny SentenceTransformer: random 2-layer Llama, byte-level BPE with BOS, weighted-mean pooling without prompt.
# ----------------------------------------------------------------------------------------------------------------


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<unk>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved SentenceTransformer folder (no name, no revision: a local export)."""
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    model = SentenceTransformer(
        modules=[
            Transformer(str(root / "llm"), max_seq_length=64),
            Pooling(HIDDEN, "weightedmean", include_prompt=False),
            Normalize(),
        ],
        device="cpu",
    )
    model.save(str(root / "encoder"))
    return root / "encoder"


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_model_dir), device="cpu")


# ----------------------------------------------------------------------------------------------------------------
# Local task files
# ----------------------------------------------------------------------------------------------------------------

MAIN_SCORES = {  # task type -> (main score key, valid range)
    "sts": ("cosine_spearman", (-1.0, 1.0)),
    "pair-classification": ("max_ap", (0.0, 1.0)),
    "classification": ("accuracy", (0.0, 1.0)),
    "clustering": ("v_measure", (0.0, 1.0)),
    "retrieval": ("ndcg_at_10", (0.0, 1.0)),
}


def local_task_name(task_type: str) -> str:
    return f"local_{task_type.replace('-', '_')}"


MODEL_NAME, REVISION = "st-prune-tests/tiny-llama-pruned", "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def evaluated(tiny_model: SentenceTransformer, tmp_path_factory: pytest.TempPathFactory):
    """Every local task type plus STSBenchmark, evaluated once; encode calls recorded with their prompts."""
    root = tmp_path_factory.mktemp("eval")
    tasks = [
        load_local_task(write_jsonl(root / f"{task_type}.jsonl", rows), task_type, name=local_task_name(task_type))
        for task_type, rows in TASK_ROWS.items()
    ]
    tasks.append(stsbenchmark_in_memory())
    meta = build_model_meta(
        tiny_model,
        name=MODEL_NAME,
        revision=REVISION,
        base_model="st-prune-tests/tiny-llama",
        license="apache-2.0",
        training_datasets={"MSMARCO"},
    )

    calls: list[tuple[str, str, str | None]] = []  # (method, first text, prompt)
    originals = {name: getattr(tiny_model, name) for name in ("encode", "encode_query", "encode_document")}

    def recording(name):
        def encode(inputs, *args, **kwargs):
            calls.append((name, inputs[0], kwargs.get("prompt")))
            return originals[name](inputs, *args, **kwargs)

        return encode

    for name in originals:
        setattr(tiny_model, name, recording(name))
    try:
        run = evaluate_model(tiny_model, tasks, meta=meta, output_dir=root / "out", batch_size=8)
    finally:
        for name in originals:
            delattr(tiny_model, name)  # drop the instance attributes: the class methods are back
    return run, calls, root


# ----------------------------------------------------------------------------------------------------------------
# Task sets and instructions
# ----------------------------------------------------------------------------------------------------------------


def test_prompt_template_excludes_exactly_the_prompt_tokens(tiny_model: SentenceTransformer):
    """The prompt's tokens must be a prefix of the prompted text's, or include_prompt=False cuts the wrong tokens."""
    tokenizer = tiny_model.tokenizer
    text = "the cat sat on the mat"
    prompt = INSTRUCTION_TEMPLATE.format(instruction="Retrieve semantically similar text")
    prompt_ids = tokenizer(prompt)["input_ids"]
    assert tokenizer(prompt + text)["input_ids"][: len(prompt_ids)] == prompt_ids
    # why the template does not end in a space: BPE merges the space into the next word
    spaced = "Retrieve semantically similar text: "
    spaced_ids = tokenizer(spaced)["input_ids"]
    assert tokenizer(spaced + text)["input_ids"][: len(spaced_ids)] != spaced_ids


# ----------------------------------------------------------------------------------------------------------------
# Local tasks, results layout, ModelMeta
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", list(TASK_ROWS))
def test_local_task_writes_results_with_its_main_score(evaluated, task_type):
    run, _, _ = evaluated
    path = run.results_dir / f"{local_task_name(task_type)}.json"
    assert path.parent.parts[-3:] == ("results", MODEL_NAME.replace("/", "__"), REVISION)
    result = json.loads(path.read_text())
    assert result["task_name"] == local_task_name(task_type)
    scores = result["scores"]["test"][0]
    metric, (low, high) = MAIN_SCORES[task_type]
    assert scores["main_score"] == pytest.approx(scores[metric])
    assert low <= scores["main_score"] <= high and not math.isnan(scores["main_score"])
    assert run.main_scores[local_task_name(task_type)] == pytest.approx(scores["main_score"])


def test_model_meta_json_tells_the_truth_about_the_model(evaluated, tiny_model: SentenceTransformer):
    run, _, _ = evaluated
    written = json.loads((run.results_dir / "model_meta.json").read_text())
    assert written["name"] == MODEL_NAME and written["revision"] == REVISION
    assert written["n_parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert written["embed_dim"] == HIDDEN
    assert written["n_embedding_parameters"] == len(tiny_model.tokenizer) * HIDDEN
    assert written["max_tokens"] == 64
    assert written["adapted_from"] == "st-prune-tests/tiny-llama"
    assert written["training_datasets"] == ["MSMARCO"]
    assert written["use_instructions"] is True and written["similarity_fn_name"] == "cosine"
    assert written["framework"] == ["Sentence Transformers", "PyTorch"]
    assert "2410.14578" in written["citation"] and "Thennal D K" in written["citation"]
    # the prompts of MTEB tasks are recorded for the registration file; local task names are not
    prompts = written["loader_kwargs"]["model_prompts"]
    instruction = "Retrieve semantically similar text"
    assert prompts["STSBenchmark"] == INSTRUCTION_TEMPLATE.format(instruction=instruction)
    assert not any(key.startswith("local_") for key in prompts)


def test_build_model_meta_counts_the_pruned_model(tiny_model: SentenceTransformer):
    meta = build_model_meta(tiny_model, name="org/tiny", revision="main")
    assert meta.n_parameters == sum(p.numel() for p in tiny_model.parameters())
    one_layer = sum(p.numel() for n, p in tiny_model.named_parameters() if ".layers.1." not in n)
    assert one_layer < meta.n_parameters  # a pruned variant would report fewer
    assert meta.embed_dim == HIDDEN and meta.training_datasets is None
    with pytest.raises(StPruneError, match="ORG/NAME"):
        build_model_meta(tiny_model, name="tiny", revision="main")
    with pytest.raises(StPruneError, match="did you mean 'MSMARCO'"):
        build_model_meta(tiny_model, name="org/tiny", revision="main", training_datasets=["MSMARC0"])


def test_instructions_reach_the_model_as_prompts(evaluated):
    _, calls, _ = evaluated
    template = INSTRUCTION_TEMPLATE
    sts_prompts = {prompt for method, text, prompt in calls if text == TASK_ROWS["sts"][0]["sentence1"]}
    assert template.format(instruction="Retrieve semantically similar text") in sts_prompts
    query_prompts = {prompt for method, _, prompt in calls if method == "encode_query"}
    document_prompts = {prompt for method, _, prompt in calls if method == "encode_document"}
    assert query_prompts == {template.format(instruction="Retrieve text based on user query")}
    assert document_prompts <= {None, ""}  # no instruction on documents


def test_model_folder_without_name_asks_for_model_name(tiny_model, tiny_model_dir, tmp_path):
    with pytest.raises(StPruneError, match="--model-name"):
        resolve_model_identity(tiny_model, tiny_model_dir)
    named = resolve_model_identity(tiny_model, tiny_model_dir, model_name="a/b")
    assert named == ("a/b", "no_revision_available")
    snapshot = tmp_path / "models--org--encoder" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    assert resolve_model_identity(tiny_model, snapshot) == ("org/encoder", "ab" * 20)


def test_hub_task_without_cached_data_names_the_dataset(tiny_model, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, never retry
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    local = load_local_task(write_jsonl(tmp_path / "mine.jsonl", TASK_ROWS["sts"]), "sts")
    meta = build_model_meta(tiny_model, name="org/tiny", revision="main")
    with pytest.raises(StPruneError, match=r"mteb/scifact@.*hf download --repo-type dataset mteb/scifact"):
        evaluate_model(tiny_model, [mteb.get_task("SciFact"), local], meta=meta, output_dir=tmp_path / "out")
    assert (tmp_path / "out/results/org__tiny/main/mine.json").is_file()  # the other tasks still ran


# ----------------------------------------------------------------------------------------------------------------
# Reports and submission
# ----------------------------------------------------------------------------------------------------------------


def test_results_table_lists_tasks_types_and_average(evaluated):
    run, _, _ = evaluated
    table = results_table_markdown(run.results_dir, task_types=run.task_types)
    assert "| local_retrieval | Retrieval |" in table and "| STSBenchmark | STS |" in table
    average = 100 * sum(run.main_scores.values()) / len(run.main_scores)
    assert f"| **Average (6 tasks)** | | **{average:.2f}** |" in table


def test_plot_of_score_against_parameters(evaluated, tmp_path):
    import matplotlib.image

    run, _, _ = evaluated
    measured = load_variant_score(run.results_dir, "tiny", kind="small", task_names=["STSBenchmark"])
    assert measured.average_score == pytest.approx(run.main_scores["STSBenchmark"])
    variants = [
        VariantScore("full", 8_000_000_000, 0.640, "full"),
        VariantScore("large", 6_300_000_000, 0.637, "large"),
        VariantScore("small", 2_100_000_000, 0.589, "small"),
        VariantScore("25%", 6_000_000_000, 0.630),
        VariantScore("50%", 4_000_000_000, 0.610),
        measured,
    ]
    path = plot_score_vs_parameters(variants, tmp_path / "plot.png", title="Tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(path).shape[0] > 100


def test_submission_folder_and_registration_file(evaluated, tmp_path):
    run, _, root = evaluated
    submission = prepare_submission(root / "out", tmp_path / "submission")
    model_dir = tmp_path / "submission/results" / MODEL_NAME.replace("/", "__") / REVISION
    assert sorted(p.name for p in model_dir.glob("*.json")) == ["STSBenchmark.json", "model_meta.json"]
    assert set(submission.skipped_tasks) == {local_task_name(t) for t in TASK_ROWS}  # local tasks stay local
    assert submission.warnings == []  # the revision is a commit hash

    spec = importlib.util.spec_from_file_location("st_prune_registration", submission.registration_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metas = [value for value in vars(module).values() if isinstance(value, ModelMeta)]
    assert [meta.name for meta in metas] == [MODEL_NAME]
    meta = metas[0]
    written = json.loads((model_dir / "model_meta.json").read_text())
    assert meta.revision == REVISION and meta.n_parameters == written["n_parameters"]
    assert meta.loader.__name__ == "SentenceTransformerEncoderWrapper"
    assert meta.loader_kwargs["model_prompts"]["STSBenchmark"].startswith("Retrieve semantically similar text")
    assert meta.citation and "2410.14578" in meta.citation


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_main(monkeypatch):
    """`st_prune.cli.main` with this module's verbs registered (independent of the other verbs' readiness)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("st_prune.commands.eval", "st_prune.commands.submit"))
    return cli.main


def test_cli_eval_and_submit_end_to_end(cli_main, tiny_model_dir, tmp_path, capsys):
    task_file = write_jsonl(tmp_path / "pairs.jsonl", TASK_ROWS["pair-classification"])
    argv = ["eval", str(tiny_model_dir), "--task-file", str(task_file), "--task-type", "pair-classification"]
    argv += ["--model-name", "org/cli-model", "--output", str(tmp_path / "out"), "--batch-size", "4"]
    assert cli_main(argv) == 0
    result = json.loads((tmp_path / "out/results/org__cli-model/no_revision_available/pairs.json").read_text())
    assert 0.0 <= result["scores"]["test"][0]["max_ap"] <= 1.0
    assert "| pairs | PairClassification |" in capsys.readouterr().out

    # only a local task: nothing for the leaderboard, and the CLI says so
    assert cli_main(["submit", str(tmp_path / "out"), "--output", str(tmp_path / "submission")]) == 2
    assert "no MTEB task results" in capsys.readouterr().err


def test_cli_submit_prepares_the_folder(cli_main, evaluated, tmp_path, capsys):
    _, _, root = evaluated
    argv = ["submit", str(root / "out"), "--output", str(tmp_path / "submission"), "--model-name", MODEL_NAME]
    assert cli_main(argv) == 0
    assert (tmp_path / "submission/st_prune_tests_models.py").is_file()
    assert (tmp_path / "submission/SUBMISSION.md").read_text().count(MODEL_NAME) == 1
    assert "left out (not MTEB tasks): local_" in capsys.readouterr().out


def test_case5_submit_never_replaces_a_file_it_did_not_write(cli_main, evaluated, tmp_path, capsys):
    """Issue 23 case 5: the user's SUBMISSION.md (or any file in the way) refuses the submission, nothing written;
    st-prune's own earlier submission is replaced by a re-run."""
    _, _, root = evaluated
    output = tmp_path / "submission"
    output.mkdir()
    (output / "SUBMISSION.md").write_text("my own plan")
    argv = ["submit", str(root / "out"), "--output", str(output), "--model-name", MODEL_NAME]
    assert cli_main(argv) == 2
    error = capsys.readouterr().err
    assert error == (
        f"st-prune submit: error: {output / 'SUBMISSION.md'} exists and was not written by st-prune, so "
        "it is never replaced; choose another --output or move it away\n"
    )
    assert [path.name for path in output.iterdir()] == ["SUBMISSION.md"]
    assert (output / "SUBMISSION.md").read_text() == "my own plan"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["submission"]  # no staging folder left

    (output / "SUBMISSION.md").unlink()
    (output / "notes.txt").write_text("mine")
    assert cli_main(argv) == 0 and cli_main(argv) == 0  # a re-run replaces its own files
    assert (output / "notes.txt").read_text() == "mine"
    assert (output / "SUBMISSION.md").read_text().count(MODEL_NAME) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tasks", "SciFakt"], "did you mean 'SciFact'"),
        (["--tasks", "paper"], "--model-name ORG/NAME"),
        (["--task-file", "x.jsonl"], "--task-file needs --task-type"),
    ],
)
def test_cli_eval_bad_input_exits_2_with_the_fix(cli_main, tiny_model_dir, tmp_path, capsys, extra, message):
    assert cli_main(["eval", str(tiny_model_dir), "--output", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
