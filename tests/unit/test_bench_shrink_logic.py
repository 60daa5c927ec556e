"""bench/bench_shrink.py's own logic: the (b=) arm's budget and the verdicts on issue 25's goals."""

from __future__ import annotations

import importlib.util

from paths import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_shrink", ROOT / "bench" / "bench_shrink.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_time_rows_fit_the_budget_in_whole_batches():
    bench = load_bench()
    # 600 s / 2000 rows of teacher + 0.8 s a step / 8 rows = 0.4 s a row; (200 - 20) / 0.4 = 450 -> 448 (56 batches)
    budget = bench.equal_time_budget(200, 20, 600, 2000, 240, 300, 8, 6)
    assert (budget["rows"], budget["steps"], budget["layers"]) == (448, 56, 6)
    assert 20 + budget["rows"] * budget["seconds_per_row"] <= 200
    assert bench.equal_time_budget(10, 20, 600, 2000, 240, 300, 8, 6)["steps"] == 0  # the scan alone is over


def record(mean, wall, tokens=None):
    return {"mean": mean, "wall_seconds": wall, "tokens_per_second": tokens, "rows": 920, "steps": 115}


def test_verdicts_say_met_only_when_every_part_holds():
    verdicts = load_bench().verdicts
    lines = verdicts({"b": record(64.1, 190, 100), "d": record(62.0, 196), "e": record(63.0, 150, 131)})
    assert lines[0].startswith("(b) >= (d) + 2 at no more wall time: MET")
    assert lines[1].startswith("(e) within 1.5 of (b) and >= 1.3x its tokens/s: MET")
    slow = verdicts({"b": record(64.1, 452, 100), "d": record(62.0, 196), "e": record(62.5, 150, 129)})
    assert "NOT MET" in slow[0] and "NOT MET" in slow[1]  # over (d)'s time; 1.29x is not 1.3x
