"""bench/bench_shrink.py on a tiny recipe and a tiny trained embedder: every arm runs through the same code as the
real bench (recipe runs with the embedder as base, self-distillation, the width cut, the in-process cut and ceiling,
tokens/s), so the bench cannot rot between its long runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from paths import ROOT
from recipe_files import write_recipe
from tiny_embedders import make_tiny_embedder


def test_every_arm_is_scored_timed_and_plotted(tiny_llm, tmp_path):
    # 64 tokens: the tiny tokenizer spells the embedder's "Instruct: ...\nQuery:" prompts nearly a token a character.
    recipe = write_recipe(tmp_path, tiny_llm("llama", layers=4), base__max_seq_length=64)
    large = make_tiny_embedder(tmp_path / "large", "qwen3_last_token")
    results = tmp_path / "results" / "shrink.json"
    command = [sys.executable, str(ROOT / "bench" / "bench_shrink.py"), "--large", str(large), "--recipe", str(recipe)]
    command += ["--output", str(tmp_path / "out"), "--json", str(results), "--rounds", "1", "--skip-equal-time"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    arms = json.loads(results.read_text())
    assert sorted(arms) == ["a", "b", "c", "d", "e", "f"]
    for arm, record in arms.items():  # random tiny models: a Spearman mean may be below 0
        assert -100 <= record["mean"] <= 100 and record["tokens_per_second"] > 0 and record["parameters"] > 0, arm
    assert arms["f"]["layers"] == 4 and arms["a"]["layers"] == arms["b"]["layers"] == arms["c"]["layers"] < 4
    assert arms["e"]["mlp_keep"] == 0.5 and arms["e"]["parameters"] < arms["b"]["parameters"]
    assert arms["b"]["teacher_texts"] > 0 and "teacher (b's cache)" in arms["e"]["wall_parts"]
    assert arms["c"]["teacher_seconds"] is None  # contrastive alone: no teacher
    table = results.with_suffix(".md").read_text()
    assert "(b) >= (d) + 2 at no more wall time:" in table and "(e) within 1.5 of (b)" in table
    assert results.with_suffix(".png").read_bytes().startswith(b"\x89PNG")

    # A second run finds every arm done: it only measures tokens/s again and rewrites the report.
    again = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env, check=False)
    assert again.returncode == 0 and "st-prune run" not in again.stdout, again.stdout[-2000:]
