"""Model card checks without a run: the batch budget, unsafe text, the strict template, eval.json's table."""

from __future__ import annotations

import json

import pytest

from st_prune.card.render import _budget, check_card, load_template
from st_prune.errors import StPruneError


def test_budget_counts_the_batch_of_every_process():
    # Under torchrun each process trains on its own batch per step: 4 GPUs see 4 times the triplets.
    assert _budget(300, 8, 64, 2000) == (
        "300 steps × 8 triplets × at most 64 tokens per text: 2,400 triplets seen, 1.20 passes over the 2,000"
    )
    assert _budget(300, 8, 64, 2000, processes=4) == (
        "300 steps × 8 triplets × 4 processes × at most 64 tokens per "
        "text: 9,600 triplets seen, 4.80 passes over the 2,000"
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("model {{ repo_id }} here", "unfilled template placeholder"),
        ("{% if x %}", "unfilled template placeholder"),
        ("TODO: write this", "TODO"),
        ("trained from /tmp/run/zoo", "temporary path"),
        ("see /root/models", "root home path"),
        ("token hf_abcdefghijklmnopqrstu", "Hugging Face token"),
        ("data in /home/alice/data", "local home path"),
    ],
)
def test_check_card_rejects_unsafe_text(text, problem):
    with pytest.raises(StPruneError, match=problem):
        check_card(f"# Card\n\n{text}\n")


def test_check_card_accepts_dict_reprs_and_the_template_is_strict():
    check_card("Transformer({'a': {'b': {'c': 1}}})")
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        load_template().render(title="only a title")


def test_card_table_shows_only_the_tasks_of_eval_json(tmp_path):
    """Issue 24 item 7: a results folder keeps the files of an earlier evaluation with another task list; the card's
    table and its average are those of the current evaluation (eval.json), not of every file in the folder."""
    from st_prune.card.render import evaluation_context

    results = tmp_path / "results" / "org__tiny" / "main"
    results.mkdir(parents=True)
    for task, score in {"STSBenchmark": 0.8, "local_sts": 0.6, "SciFact": 0.1}.items():  # SciFact: a stale task
        result = {"task_name": task, "scores": {"test": [{"main_score": score}]}}
        (results / f"{task}.json").write_text(json.dumps(result))
    (results / "model_meta.json").write_text("{}")
    evaluation = {
        "scores": {"STSBenchmark": 0.8, "local_sts": 0.6},
        "average": 0.7,
        "task_types": {"STSBenchmark": "STS", "local_sts": "STS"},
        "main_score_names": {"STSBenchmark": "cosine_spearman", "local_sts": "cosine_spearman"},
        "results_dir": "results/org__tiny/main",
    }
    context = evaluation_context(evaluation, tmp_path, {"local_sts"})
    assert context["table"].splitlines()[2:] == [
        "| STSBenchmark | STS | 80.00 |",
        "| local_sts | STS | 60.00 |",
        "| **Average (2 tasks)** | | **70.00** |",
    ]
    assert [row["task"] for row in context["rows"]] == ["STSBenchmark", "local_sts"] and context["average"] == 0.7
    # A task of eval.json whose result file is gone: one line naming the fix, not a table without it.
    (results / "local_sts.json").unlink()
    with pytest.raises(StPruneError, match=r"lacks results for \['local_sts'\]: evaluate the variant") as error:
        evaluation_context(evaluation, tmp_path, {"local_sts"})
    assert "\n" not in str(error.value)
    assert evaluation_context(None, tmp_path, set()) == {"table": "", "rows": [], "average": None}
