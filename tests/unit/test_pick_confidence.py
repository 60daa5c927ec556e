"""How sure a pick is: the bootstrap over the scan's batches (st_prune.l3prune.scan.pick_confidence) and where it shows.

The recipe runner's scan.json and model card are checked in tests/integration/test_recipe_runs.py (its one end-to-end run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from st_prune.errors import StPruneError
from st_prune.l3prune.scan import BOOTSTRAP_RESAMPLES, L3PruneResult, pick_confidence


def clear_minima(batches: int = 16, seed: int = 0) -> np.ndarray:
    """8 depths with minima at 3 (small half) and 6 (large half) far deeper than the batch-to-batch noise."""
    curve = np.array([3.0, 2.5, 1.0, 2.0, 2.2, 0.5, 1.5, 1.8])
    return curve + np.random.default_rng(seed).normal(0.0, 0.02, size=(batches, 8))


def near_tie(batches: int = 8, gap: float = 0.01) -> np.ndarray:
    """10 depths; in the small half depths 3 and 4 differ by ``gap`` on average but swap places batch by batch.

    Even batches favour depth 3 by 0.4 + gap, odd ones depth 4 by 0.4 - gap, and every batch shifts all depths by
    its own difficulty. A resample of n batches picks 3 when its count k of even batches gives
    ``-(0.4 + gap) k + (0.4 - gap)(n - k) <= 0``, i.e. ``k >= (0.4 - gap) n / 0.8``: the share is a binomial tail.
    """
    curve = np.array([3.0, 2.6, 1.0, 1.0 + gap, 2.0, 2.0, 1.0, 1.5, 1.6, 1.7])
    losses = np.tile(curve, (batches, 1)) + np.random.default_rng(0).normal(0.0, 0.5, size=(batches, 1))
    swing = np.where(np.arange(batches) % 2 == 0, 0.2, -0.2)
    losses[:, 2] -= swing
    losses[:, 3] += swing
    return losses


def binomial_tail(n: int, at_least: int) -> float:
    return sum(math.comb(n, k) for k in range(at_least, n + 1)) / 2**n


def test_a_clear_minimum_is_the_pick_in_every_resample():
    report = pick_confidence(clear_minima(), seed=1)
    assert (report["resamples"], report["batches"], report["seed"]) == (BOOTSTRAP_RESAMPLES, 16, 1)
    assert report["small"] == {"depth": 3, "share": 1.0, "runner_up": 4, "runner_up_share": 0.0}  # 4: next-lowest mean
    assert report["large"] == {"depth": 6, "share": 1.0, "runner_up": 7, "runner_up_share": 0.0}


def test_two_near_equal_depths_split_the_resamples_and_name_each_other():
    small = pick_confidence(near_tie(batches=8, gap=0.01), seed=0)["small"]
    assert small["depth"] == 3 and small["runner_up"] == 4
    # Depth 3 wins when at least 4 of the 8 draws are even batches: P(Binomial(8, 1/2) >= 4) = 163/256.
    expected = binomial_tail(8, 4)
    assert small["share"] == pytest.approx(expected, abs=0.05)  # 1000 resamples: sigma 0.015
    assert small["runner_up_share"] == pytest.approx(1 - expected, abs=0.05)  # no other depth of the half ever wins


def test_more_batches_make_the_same_near_tie_surer():
    # With a gap of 0.05, depth 3 needs k >= 0.4375 n even batches: 4 of 8 (64 %), 88 of 200 (~96 %).
    few, many = (pick_confidence(near_tie(batches=n, gap=0.05), seed=0)["small"]["share"] for n in (8, 200))
    assert few == pytest.approx(binomial_tail(8, 4), abs=0.05)
    assert many == pytest.approx(binomial_tail(200, 88), abs=0.03) and many > 0.9


def test_the_bootstrap_is_deterministic_for_a_seed():
    losses = near_tie()
    assert pick_confidence(losses, seed=7) == pick_confidence(losses, seed=7)
    assert pick_confidence(losses, seed=7)["small"]["share"] != pick_confidence(losses, seed=8)["small"]["share"]
    # The result's default seed is the scan's: the same scan always reports the same shares.
    result = L3PruneResult(losses.mean(axis=0).tolist(), batch_losses=losses.tolist(), seed=7)
    assert result.pick_confidence() == pick_confidence(losses, seed=7)
    unseeded = L3PruneResult(losses.mean(axis=0).tolist(), batch_losses=losses.tolist())
    assert unseeded.pick_confidence() == unseeded.pick_confidence() == pick_confidence(losses, seed=0)


@pytest.mark.parametrize(
    ("batch_losses", "message"),
    [
        ([[1.0, 2.0]], "at least 2 batches"),
        ([[1.0], [2.0]], "at least 2 batches x 2 depths"),
        ([1.0, 2.0], "at least 2 batches"),
    ],
)
def test_too_little_to_resample_is_refused(batch_losses, message):
    with pytest.raises(StPruneError, match=message):
        pick_confidence(batch_losses)


def test_a_half_with_one_depth_has_no_runner_up():
    report = pick_confidence([[2.0, 1.0], [2.5, 1.2]])  # L=2: each half is a single depth
    assert report["small"] == {"depth": 1, "share": 1.0, "runner_up": None, "runner_up_share": 0.0}


# ---------------------------------------------------------------------------------------------------------------------
# The result: kept per-batch losses, scan.json, summary, plot
# ---------------------------------------------------------------------------------------------------------------------
def test_scan_json_keeps_batch_losses_and_the_confidence_and_round_trips(tmp_path):
    losses = clear_minima(batches=4)
    result = L3PruneResult(losses.mean(axis=0).tolist(), batch_losses=losses.tolist(), seed=42, num_batches=4)
    stored = json.loads(result.save(tmp_path / "scan.json").read_text())
    assert stored["batch_losses"] == losses.tolist()
    assert stored["pick_confidence"] == pick_confidence(losses, seed=42)
    assert stored["pick_confidence"]["small"]["depth"] == stored["small"] == 3
    loaded = L3PruneResult.load(tmp_path / "scan.json")
    assert loaded == result and loaded.pick_confidence() == stored["pick_confidence"]
    # A scan of one batch has nothing to resample; a curve without batches (older files) has no confidence.
    assert L3PruneResult([2.0, 1.0, 3.0, 0.5], batch_losses=[[2.0, 1.0, 3.0, 0.5]]).to_dict()["pick_confidence"] is None
    assert L3PruneResult([2.0, 1.0, 3.0, 0.5]).to_dict()["pick_confidence"] is None


@pytest.mark.parametrize(
    ("batch_losses", "message"),
    [
        ([[1.0, 2.0, 3.0]], r"shape \(1, 3\), expected \(batches, 4\)"),
        ([[1.0, 2.0, 3.0, float("nan")]], "non-finite"),
        ([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]], "do not average to losses"),
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], "list of per-depth loss lists"),
    ],
)
def test_batch_losses_that_do_not_fit_the_curve_are_refused(batch_losses, message):
    with pytest.raises(StPruneError, match=message):
        L3PruneResult([1.0, 2.0, 3.0, 4.0], batch_losses=batch_losses)


def test_summary_and_text_say_how_sure_each_pick_is():
    sure = L3PruneResult(clear_minima().mean(axis=0).tolist(), batch_losses=clear_minima().tolist())
    assert sure.confidence_text("small") == "small = 3 (100 % of 1000 resamples; runner-up 4)"
    assert (
        "  the pick in 100 % of 1000 bootstrap resamples of the 16 batches; runner-up 4 layers (0 %)" in sure.summary()
    )
    assert "scan more batches" not in sure.summary()
    losses = near_tie()
    unsure = L3PruneResult(losses.mean(axis=0).tolist(), batch_losses=losses.tolist())
    share = unsure.pick_confidence()["small"]["share"]
    assert f"the pick in {100 * share:.0f} % of 1000 bootstrap resamples of the 8 batches" in unsure.summary()
    assert "under 80 %: scan more batches for a surer pick" in unsure.summary()
    assert L3PruneResult([2.0, 1.0, 3.0, 0.5]).confidence_text("small") is None


def test_the_plot_legend_shows_each_picks_share(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    legends = []
    close = plt.close
    monkeypatch.setattr(
        plt,
        "close",
        lambda figure: (
            legends.append([text.get_text() for text in figure.axes[0].get_legend().get_texts()]),
            close(figure),
        ),
    )
    losses = clear_minima()
    L3PruneResult(losses.mean(axis=0).tolist(), batch_losses=losses.tolist()).plot(tmp_path / "scan.png")
    assert any(label.endswith("\nsmall = 3 (100 % of 1000 resamples; runner-up 4)") for label in legends[0]), legends
    assert any(label.endswith("\nlarge = 6 (100 % of 1000 resamples; runner-up 7)") for label in legends[0]), legends
