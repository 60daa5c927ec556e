"""Task lists, prompts, local task files and the eval/submit verbs, resolved without a model or data download."""

from __future__ import annotations

import mteb
import pytest
from evaluation_tasks import TASK_ROWS, write_jsonl

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.evaluation.local_tasks import load_local_task
from st_prune.evaluation.prompts import INSTRUCTION_TEMPLATE, build_task_prompts
from st_prune.evaluation.tasks import PAPER_TASK_NAMES, paper_tasks, resolve_tasks


def test_paper_resolves_to_the_15_v1_tasks():
    tasks = resolve_tasks("paper")
    assert [task.metadata.name for task in tasks] == list(PAPER_TASK_NAMES)
    assert len(tasks) == 15
    types = [task.metadata.type for task in tasks]
    assert types.count("Retrieval") == 3 and types.count("Reranking") == 2 and types.count("STS") == 3
    # v1 task objects of MTEB(eng, v1): STS17 restricted to its English pair, nothing loaded
    sts17 = tasks[PAPER_TASK_NAMES.index("STS17")]
    assert sts17.hf_subsets == ["en-en"]
    assert not any(task.data_loaded for task in tasks)


def test_mteb_eng_v2_and_name_lists_resolve_without_data():
    v2 = resolve_tasks("mteb-eng-v2")
    assert len(v2) == len(mteb.get_benchmark("MTEB(eng, v2)").tasks) > 15
    assert "ArguAna" in {task.metadata.name for task in v2}
    named = resolve_tasks("SciFact, ArguAna,SciFact")
    assert [task.metadata.name for task in named] == ["SciFact", "ArguAna"]


@pytest.mark.parametrize(
    ("spec", "suggestion"), [("SciFakt", "SciFact"), ("STSBenchmrk", "STSBenchmark"), ("papr", "paper")]
)
def test_unknown_task_names_suggest_close_matches(spec, suggestion):
    with pytest.raises(StPruneError, match=f"did you mean.*'{suggestion}'"):
        resolve_tasks(["ArguAna", spec])


def test_instructions_on_the_query_side_or_both_sides():
    prompts = build_task_prompts(paper_tasks())
    template = INSTRUCTION_TEMPLATE
    assert prompts["SciFact-query"] == template.format(
        instruction="Given a scientific claim, retrieve documents that support or refute the claim"
    )
    assert "SciFact" not in prompts and "SciFact-document" not in prompts  # documents: no instruction
    assert prompts["SciDocsRR-query"].startswith("Given a title of a scientific paper")  # reranking: query side
    for symmetric in ("STSBenchmark", "SprintDuplicateQuestions", "Banking77Classification", "MedrxivClusteringS2S"):
        assert symmetric in prompts  # a task-name key applies to both sides
    assert len(prompts) == 15


def test_model_prompts_win_and_fallbacks_apply():
    scifact, nq = mteb.get_task("SciFact"), mteb.get_task("NQ")
    prompts = build_task_prompts([scifact, nq], model_prompts={"SciFact": "Claim: ", "query": ""})
    assert prompts["SciFact"] == "Claim: " and "SciFact-query" not in prompts
    # NQ is not a paper task: its own mteb instruction is used
    assert prompts["NQ-query"] == INSTRUCTION_TEMPLATE.format(instruction=nq.metadata.prompt["query"])
    assert prompts["query"] == ""


@pytest.mark.parametrize(
    ("task_type", "rows", "row", "field"),
    [
        ("sts", [{"sentence1": "a", "sentence2": "b", "score": 1}, {"sentence1": "a", "sentence2": "b"}], 2, "score"),
        ("sts", [{"sentence1": "a", "sentence2": "b", "score": "high"}], 1, "score"),
        ("pair-classification", [{"sentence1": "a", "sentence2": "b", "label": 2}], 1, "label"),
        (
            "classification",
            [{"text": "a", "label": "x", "split": "train"}, "", {"text": "b", "label": "y", "split": "dev"}],
            3,
            "split",
        ),
        ("clustering", [{"text": "a", "label": 1}, {"text": "b", "label": "1"}], 2, "label"),
        ("retrieval", [{"query": "q", "document": ""}], 1, "document"),
        ("retrieval", [{"query": "q", "document": "d"}, "{not json"], 2, "<row>"),
    ],
)
def test_malformed_task_file_names_file_row_and_field(tmp_path, task_type, rows, row, field):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(StPruneError) as error:
        load_local_task(path, task_type)
    message = str(error.value)
    assert str(path) in message and f"row {row}:" in message and f"'{field}'" in message


def test_local_task_cannot_take_an_mteb_task_name(tmp_path):
    path = write_jsonl(tmp_path / "STSBenchmark.jsonl", TASK_ROWS["sts"])
    with pytest.raises(StPruneError, match="--task-name"):
        load_local_task(path, "sts")


def test_cli_registers_eval_and_submit():
    from st_prune.commands import eval as eval_command
    from st_prune.commands import submit as submit_command

    parser = cli.build_parser()
    assert parser.parse_args(["eval", "model", "--tasks", "paper"]).func is eval_command.run
    assert parser.parse_args(["submit", "results", "--output", "out"]).func is submit_command.run
