"""L3Prune: the one-pass scan equals physically cut models; the paper's picks; budgets; files; CLI; bad input."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from tiny_models import CORPUS

from st_prune import encoder_from_llm

from st_prune.model import architectures
from st_prune.cli import main
from st_prune.data.triplets import (
    QUERY_PROMPT_TEMPLATE,
    instruction_prompt,
    load_triplets,
    split_by_instruction,
)
from st_prune.errors import StPruneError
from st_prune.l3prune.scan import L3Prune, L3PruneResult, LayerTap, select_depths

WORDS = " ".join(CORPUS).split()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def triplets(rows: int, seed: int = 0, instructions: list[str] | None = None) -> Dataset:
    """Random short texts of uneven length (so padding matters) from the tiny tokenizer's corpus."""
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))

    data = {column: [text() for _ in range(rows)] for column in ("anchor", "positive", "negative")}
    if instructions:
        data["instruction"] = [instructions[index % len(instructions)] for index in range(rows)]
    return Dataset.from_dict(data)


def reference_losses(folder: Path, selector: L3Prune, data, pooling: str, padding_side: str, prompts=None):
    """Per-depth (mean, std) of ST's own forward + MultipleNegativesRankingLoss on models cut to k layers."""
    batches = selector.sample(data, prompts)
    total = architectures.num_layers(__import__("transformers").AutoConfig.from_pretrained(folder))
    means, stds = [], []
    for depth in range(1, total + 1):
        model = encoder_from_llm(str(folder), layers=depth, pooling=pooling, max_seq_length=64)
        model.tokenizer.padding_side = padding_side
        loss = MultipleNegativesRankingLoss(model, scale=selector.scale)
        with torch.no_grad():
            values = torch.tensor(
                [loss([model.preprocess(b.texts[c], prompt=b.prompts[c]) for c in b.texts], None).item() for b in batches],
                dtype=torch.float64,
            )
        means.append(values.mean().item())
        stds.append(values.std(unbiased=False).item())
    return means, stds, batches


# ---------------------------------------------------------------------------------------------------------------------
# Exactness: scan at depth k == the model cut to k layers, through plain sentence-transformers
# ---------------------------------------------------------------------------------------------------------------------
CASES = [
    # family, pooling, padding side, how the anchor gets its prompt
    ("llama", "weighted_mean", "right", "instruction column"),
    ("qwen2", "last_token", "right", "none"),
    ("gemma3_text", "mean", "left", "trainer prompts"),
    ("phi3", "last_token", "left", "instruction column"),
]


@pytest.mark.parametrize("family,pooling,padding_side,prompting", CASES)
def test_scan_equals_physically_cut_models(tiny_llm, family, pooling, padding_side, prompting):
    folder = tiny_llm(family, layers=4)
    selector = L3Prune(batch_size=4, num_batches=3, seed=7, show_progress_bar=False)
    prompts = None
    if prompting == "instruction column":
        data = triplets(24, instructions=["Given a question, retrieve the answer", "Retrieve similar text."])
    elif prompting == "trainer prompts":
        data = DatasetDict({"a": triplets(8, seed=1), "b": triplets(8, seed=2)})
        prompts = {"a": {"anchor": instruction_prompt("Find the dog")}, "b": {"anchor": "query: ", "positive": "doc: "}}
    else:
        data = triplets(12)

    model = encoder_from_llm(str(folder), pooling=pooling, max_seq_length=64)
    model.tokenizer.padding_side = padding_side
    result = selector.select(model, data, prompts)
    expected, expected_std, batches = reference_losses(folder, selector, data, pooling, padding_side, prompts)

    assert result.num_layers == 4
    assert any(prompt for batch in batches for prompt in batch.prompts.values()) == (prompting != "none")
    for depth in range(4):
        assert result.losses[depth] == pytest.approx(expected[depth], abs=1e-5), f"depth {depth + 1}"
        assert result.stds[depth] == pytest.approx(expected_std[depth], abs=1e-5), f"depth {depth + 1}"
    assert len(architectures.decoder_layers(model[0].auto_model)) == 4  # the scan does not modify the model


def test_hooks_accept_tuple_and_tensor_layer_outputs_and_keep_only_pooled_vectors(tiny_llm):
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    features = model.preprocess(["a dog runs", "the quick brown fox jumps"])
    with torch.inference_mode(), LayerTap(model) as tap:
        pooled = tap.run(model, features)
        hidden = torch.randn(2, features["input_ids"].shape[1], 32)
        tap.features = features
        tap._hook(0)(None, None, hidden)
        from_tensor = tap.pooled[0]
        tap._hook(0)(None, None, (hidden, None))
        from_tuple = tap.pooled[0]
    assert pooled.shape == (4, 2, 32)  # L x B x H, nothing token-sized kept
    assert torch.equal(from_tensor, from_tuple)
    assert not any(layer._forward_hooks for layer in architectures.decoder_layers(model[0].auto_model))


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
    result = L3PruneResult([5.0, 4.0, 3.0, 3.5, 2.0, 2.5], parameters=[40 + 10 * k for k in range(1, 7)], other_parameters=40)
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
        [3.0, 2.5, 2.7, 1.9, 2.2], stds=[0.1] * 5, parameters=[10, 20, 30, 40, 50], other_parameters=0,
        model="tiny", batch_size=4, num_batches=2, seed=1, scale=50.0,
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


def test_prune_cuts_in_place_and_refuses_another_depth(tiny_llm):
    folder = str(tiny_llm("qwen2", layers=4))
    model = encoder_from_llm(folder, max_seq_length=64)
    result = L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).select(model, triplets(8))
    assert result.parameters[-1] == sum(p.numel() for p in model.parameters())
    assert result.prune(model, "small") is model
    assert model[0].num_layers == result.small
    assert result.parameters[result.small - 1] == sum(p.numel() for p in model.parameters())
    assert model.encode(["a dog"]).shape == (1, 32)
    with pytest.raises(StPruneError, match="4-layer"):
        result.prune(encoder_from_llm(folder, layers=3), "large")


def test_measured_latency_covers_every_depth(tiny_llm):
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    result = L3PruneResult([1.0, 2.0, 3.0, 4.0])
    ratios = result.measure_latency(model, ["a dog runs in the field"] * 4, depths=[1, 4], repeats=2)
    assert len(ratios) == 4 and ratios[-1] == 1.0 and all(r > 0 for r in ratios)
    assert result.latency_source == "measured"


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
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}", "task": "t1" if i % 2 else "t2", "id": i}
            for i in range(4)]
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
    from st_prune.evaluation.evaluate import INSTRUCTION_TEMPLATE

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
        (Dataset.from_dict({"text": ["a", "b"], "positive": ["c", "d"]}), r"lacks column\(s\) anchor \(found: text, positive\)"),
        (Dataset.from_dict({"anchor": ["a", "b", "c"], "positive": ["x", None, "z"]}), r"row 1 .*column 'positive' is not text"),
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


@pytest.mark.parametrize("kwargs,message", [({"batch_size": 1}, "batch_size"), ({"num_batches": 0}, "num_batches"),
                                            ({"scale": 0}, "scale")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(StPruneError, match=message):
        L3Prune(**kwargs)


def test_one_layer_model_and_nan_losses_are_reported(tiny_llm):
    data = triplets(8)
    one = encoder_from_llm(str(tiny_llm("llama", layers=1)), max_seq_length=64)
    with pytest.raises(StPruneError, match="at least 2"):
        L3Prune(batch_size=4, show_progress_bar=False).select(one, data)
    model = encoder_from_llm(str(tiny_llm("llama", layers=4)), max_seq_length=64)
    with torch.no_grad():
        architectures.decoder_layers(model[0].auto_model)[2].mlp.down_proj.weight.fill_(math.nan)
    with pytest.raises(StPruneError, match=r"nan at depth\(s\) 3, 4"):
        L3Prune(batch_size=4, num_batches=2, show_progress_bar=False).select(model, data)
    with pytest.raises(StPruneError, match="depth"):
        L3PruneResult([1.0, math.nan, 2.0])


# ---------------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------------
def test_cli_scan_end_to_end(tiny_llm, tmp_path, capsys):
    data = tmp_path / "triplets.jsonl"
    rows = triplets(12, instructions=["Find the answer"]).to_list()
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out" / "scan.json"
    argv = ["scan", str(tiny_llm("gemma3_text", layers=4)), "--data", str(data), "--batch-size", "4",
            "--num-batches", "3", "--max-seq-length", "64", "--output", str(output)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    stored = json.loads(output.read_text())
    assert len(stored["losses"]) == stored["num_layers"] == 4
    assert f"small: keep {stored['small']}/4 layers" in printed and f"large: keep {stored['large']}/4" in printed
    assert "parameters" in printed
    assert output.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert (stored["batch_size"], stored["num_batches"], stored["seed"], stored["scale"]) == (4, 3, 42, 50.0)

    assert main([*argv[:5], "1"]) == 2  # batch size 1
    assert "batch_size must be an integer >= 2" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["scan", "no-such-model", "--data", str(empty)]) == 2  # data checked before the model loads
    assert "no rows" in capsys.readouterr().err
