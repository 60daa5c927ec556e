"""L3Prune without a model: the paper's picks, budgets, result files, sampling, triplet files, bad data and settings."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset
from l3prune_data import PNG_MAGIC, triplets

from st_prune.data.triplets import load_triplets, split_by_instruction
from st_prune.errors import StPruneError
from st_prune.l3prune.scan import L3Prune, L3PruneResult, select_depths
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_prompt


# ---------------------------------------------------------------------------------------------------------------------
# The paper's selection rule, budgets, files
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "losses,small,large",
    [
        ([2.0, 1.0], 1, 2),  # L=2: each half has one depth
        ([3.0, 1.0, 1.0, 2.0, 1.0, 1.0], 2, 5),  # ties go to the smaller depth, in each half
        ([5.0, 4.0, 3.0, 9.0, 8.0], 2, 3),  # odd L: small over 1..2, large over 3..5; minima at both boundaries
        ([1.0, 2.0, 3.0, 0.5, 4.0, 5.0, 6.0], 1, 4),  # global minimum right after the midpoint (L//2 + 1)
        ([4.0, 3.0, 2.0, 1.0, 1.0, 0.9], 3, 6),  # minimum at L//2 (small) and at L (large)
    ],
)
def test_selection_follows_the_paper(losses, small, large):
    assert select_depths(losses) == (small, large)
    result = L3PruneResult(losses)
    assert (result.small, result.large) == (small, large)


def test_budget_picks_use_parameters_layer_share_and_latency():
    # 6 layers of 10 parameters on 40 others: depth k has 40 + 10k parameters
    result = L3PruneResult(
        [5.0, 4.0, 3.0, 3.5, 2.0, 2.5], parameters=[40 + 10 * k for k in range(1, 7)], other_parameters=40
    )
    assert result.best_under() == 5
    assert result.best_under(max_params=85) == 3  # depths 1..4 fit; 3 has the lowest loss
    assert result.best_under(max_layer_fraction=0.5) == 3
    assert result.best_under(max_layer_fraction=0.5, max_params=65) == 2
    assert result.estimated_latency_ratios() == pytest.approx([k / 6 for k in range(1, 7)])
    assert result.best_under(max_latency_ratio=0.5) == 3
    result.latency_ratios, result.latency_source = [0.1, 0.2, 0.6, 0.7, 0.8, 1.0], "measured"
    assert result.best_under(max_latency_ratio=0.5) == 2  # measured ratios win over the estimate
    assert result.parameter_fraction_pruned("small") == pytest.approx(1 - 70 / 100)
    with pytest.raises(StPruneError, match="max_params"):
        result.best_under(max_params=45)


def test_json_round_trip_and_png(tmp_path):
    result = L3PruneResult(
        [3.0, 2.5, 2.7, 1.9, 2.2],
        stds=[0.1] * 5,
        parameters=[10, 20, 30, 40, 50],
        other_parameters=0,
        model="tiny",
        batch_size=4,
        num_batches=2,
        seed=1,
        scale=50.0,
    )
    path = result.save(tmp_path / "scan.json")
    stored = json.loads(path.read_text())
    assert stored["losses"] == result.losses and stored["num_layers"] == 5
    assert (stored["small"], stored["large"]) == (2, 4)
    loaded = L3PruneResult.load(path)
    assert loaded == result
    png = result.plot(tmp_path / "scan.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    with pytest.raises(StPruneError, match="losses"):
        (tmp_path / "bad.json").write_text('{"small": 1}')
        L3PruneResult.load(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"losses": [3.0, 2.5')
    with pytest.raises(StPruneError, match=r"cut.json is not valid JSON \(.*line 1\); write it with `st-prune scan`"):
        L3PruneResult.load(tmp_path / "cut.json")
    with pytest.raises(StPruneError, match=r"missing.json not found; write it with `st-prune scan`"):
        L3PruneResult.load(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------------
# Sampling and data
# ---------------------------------------------------------------------------------------------------------------------
def test_sampling_uses_all_rows_of_exact_data_is_seeded_and_keeps_one_instruction_per_batch():
    data = triplets(12)
    batches = L3Prune(batch_size=4, num_batches=3, seed=3).sample(data)
    assert sorted(text for batch in batches for text in batch.texts["anchor"]) == sorted(data["anchor"])
    again = L3Prune(batch_size=4, num_batches=3, seed=3).sample(data)
    other = L3Prune(batch_size=4, num_batches=3, seed=4).sample(data)
    assert [b.texts for b in again] == [b.texts for b in batches] != [b.texts for b in other]

    mixed = triplets(40, instructions=["Task one", "Task two", "Task three", "Task four"])
    anchors = dict(zip(mixed["anchor"], mixed["instruction"]))
    for batch in L3Prune(batch_size=5, num_batches=8).sample(mixed):
        prompt = batch.prompts["anchor"]
        assert prompt in {instruction_prompt(f"Task {n}") for n in ("one", "two", "three", "four")}
        assert {instruction_prompt(anchors[a]) for a in batch.texts["anchor"]} == {prompt}
        assert batch.prompts["positive"] is None and batch.prompts["negative"] is None


def test_load_triplets_reads_files_aliases_and_task_instructions(tmp_path):
    rows = [
        {"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}", "task": "t1" if i % 2 else "t2", "id": i}
        for i in range(4)
    ]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    data = load_triplets(jsonl, instructions={"t1": "Do one"}, default_instruction="Do other")
    assert data.column_names == ["anchor", "positive", "negative", "instruction"]
    assert data["anchor"] == ["q0", "q1", "q2", "q3"]
    assert data["instruction"] == ["Do other", "Do one", "Do other", "Do one"]
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("anchor,positive\nhello,world\nfoo,bar\n")
    assert load_triplets(csv_path).column_names == ["anchor", "positive"]
    parquet = tmp_path / "data.parquet"
    Dataset.from_dict({"anchor": ["a"], "positive": ["b"]}).to_parquet(str(parquet))
    assert load_triplets(parquet)["positive"] == ["b"]
    datasets, prompts = split_by_instruction(data)
    assert {name: len(d) for name, d in datasets.items()} == {"d0": 2, "d1": 2}
    assert prompts == {"d0": {"anchor": "Do one →"}, "d1": {"anchor": "Do other →"}}
    with pytest.raises(StPruneError, match="no instruction for task"):
        load_triplets(jsonl, instructions={"t1": "Do one"})


def test_query_prompt_template_is_the_evaluation_template():
    # Scan, training and evaluation must format instructions identically.
    from st_prune.evaluation.prompts import INSTRUCTION_TEMPLATE

    assert INSTRUCTION_TEMPLATE == QUERY_PROMPT_TEMPLATE == "{instruction} →"
    assert instruction_prompt("Retrieve similar text. ") == "Retrieve similar text →"
    assert instruction_prompt("  ") is None


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data,message",
    [
        (Dataset.from_dict({"anchor": [], "positive": []}), "no rows"),
        (
            Dataset.from_dict({"text": ["a", "b"], "positive": ["c", "d"]}),
            r"lacks column\(s\) anchor \(found: text, positive\)",
        ),
        (
            Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["x", None, "z"]}),
            r"row 1 .*column 'positive' is not text",
        ),
        (Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["x", "y", "z"]}), "fewer than one batch of 4"),
    ],
)
def test_bad_data_is_refused_before_model_work(data, message):
    with pytest.raises(StPruneError, match=message):
        L3Prune(batch_size=4).select(None, data)  # no model needed: data errors come first


def test_non_text_values_in_a_file_name_row_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": 3, "positive": "c"}\n')
    with pytest.raises(StPruneError, match=r"row 1 \(0-based\), column 'anchor' is not text \(int"):
        load_triplets(path)


@pytest.mark.parametrize(
    "kwargs,message", [({"batch_size": 1}, "batch_size"), ({"num_batches": 0}, "num_batches"), ({"scale": 0}, "scale")]
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(StPruneError, match=message):
        L3Prune(**kwargs)
