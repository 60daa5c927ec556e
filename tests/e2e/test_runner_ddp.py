"""`st-prune run` under torchrun (issue 14, item 2): 2 CPU processes (gloo) run a tiny recipe end to end.

Rank 0 checks, scans and prunes while rank 1 waits; both train (in-batch negatives gathered across the processes);
rank 0 alone exports, evaluates, writes cards and the zoo index; both exit 0; the output holds one progress log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from plain_st import encode_in_plain_process  # noqa: E402
from recipe_files import WORDS, write_sts_task
from torchrun import run_two_processes

BATCH, STEPS = 4, 3


def write_recipe(folder: Path, model: Path) -> Path:
    """L3Prune's two picks of the tiny model, 3 steps each at 4 triplets per process, a 12-pair local STS task."""
    with (folder / "triplets.jsonl").open("w") as handle:
        for index in range(48):
            a, b, c = WORDS[index % 12], WORDS[(index + 1) % 12], WORDS[(index + 5) % 12]
            handle.write(
                json.dumps(
                    {
                        "anchor": f"the {a} and {b} {index}",
                        "positive": f"a {a} with a {b} {index}",
                        "negative": f"the {c} on the road {index}",
                    }
                )
                + "\n"
            )
    write_sts_task(folder)
    recipe = {
        "name": "tiny-ddp",
        "base": {"model": str(model), "id": "st-prune-test/tiny-llama", "max_seq_length": 32},
        "variants": [{"name": "small", "pick": "small"}, {"name": "large", "pick": "large"}],
        "scan": {"batch_size": 4, "num_batches": 2},
        "training": {
            "steps": STEPS,
            "batch_size": BATCH,
            "warmup_steps": 1,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_steps": 2,
        },
        "data": {"path": "triplets.jsonl", "default_instruction": "Retrieve matching pairs"},
        "evaluation": {"local_tasks": [{"path": "sts.jsonl", "type": "sts", "name": "TinySTS"}]},
        "card": {"license": "apache-2.0", "language": ["en"]},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_torchrun_runs_a_recipe_with_two_processes_end_to_end(tiny_llm, tmp_path):
    recipe = write_recipe(tmp_path, tiny_llm("llama", layers=4))
    output, records = tmp_path / "run", tmp_path / "ranks"
    args = [str(records), "run", str(recipe), "--output", str(output), "--zoo-index", str(tmp_path / "index")]
    started = time.perf_counter()
    result = run_two_processes("ddp_run_script.py", *args, timeout=600)
    seconds = time.perf_counter() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    ranks = [json.loads((records / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["status"] for rank in ranks] == [0, 0]
    for rank in ranks:
        # Each process scores its 4 anchors against the positives and hard negatives of *both* processes, at
        # every step of both variants: the loss saw twice the per-process batch.
        assert rank["similarity_shapes"] == [[BATCH, 2 * BATCH * 2]] * (2 * STEPS)

    # One progress log: rank 0's (rank 1 trained as quietly as it waited).
    for line in (
        "[run ] scan ...",
        "[run ] train[small] ...",
        "[run ] train[large] ...",
        "[run ] export[small] ...",
        "[run ] evaluate[large] ...",
        "[run ] card[large] ...",
        "st-prune run tiny-ddp: finished in",
    ):
        assert log.count(line) == 1, (line, log[-4000:])
    assert "L3Prune picks" in log and log.count("L3Prune picks") == 1

    summary = json.loads((output / "summary.json").read_text())
    trained = {
        variant: json.loads((output / "work" / variant / "train.json").read_text()) for variant in ("small", "large")
    }
    assert all(record["steps"] == STEPS and record["processes"] == 2 for record in trained.values())
    assert not list((output / "work").glob("*/checkpoints"))  # spent once rank 0 wrote the train markers
    zoo = json.loads((tmp_path / "index" / "zoo.json").read_text())
    folders = sorted((output / "models").glob("*/modules.json"))
    assert len(folders) == 2 and len(zoo) == 2
    for modules in folders:  # the card's budget counts both processes' batches
        assert (
            f"- Budget: {STEPS} steps × {BATCH} triplets × 2 processes × " in (modules.parent / "README.md").read_text()
        )
    texts = ["the cat and dog", "a bank with money"]
    for modules in folders:
        embeddings, _ = encode_in_plain_process(modules.parent, texts, tmp_path)  # st_prune not importable there
        assert embeddings.shape[0] == 2 and embeddings.any()
    print(
        f"\n2-process run: {seconds:.1f}s in all (stages: "
        + ", ".join(f"{row['stage']} {row['seconds']}s" for row in summary["stages"])
        + ")"
    )
