"""L3Prune: pick how many decoder layers to keep from the base model's own per-layer contrastive loss.

For every depth k = 1..L the scan computes the loss a k-layer model would have *before* training: the final norm
applied to the output of decoder layer k, the model's own pooling (prompt tokens excluded) and Normalize, then
hard-negative InfoNCE on cosine similarity, the very numbers ``MultipleNegativesRankingLoss(model, scale=50)``
gives a model physically cut to k layers. The curve's minimum before the midpoint is the ``small`` pick, its
minimum after it the ``large`` pick (arXiv 2410.14578, section 3).

One forward pass per text batch serves all L depths: forward hooks on the decoder layers apply the final norm and
the pooling modules to each layer's output as soon as it exists and keep only the pooled ``B x H`` vectors, so the
scan costs one plain forward plus L small poolings, and its extra memory is ``O(L * B * H)``.

The per-batch losses are kept, so each pick comes with how sure it is: the share of bootstrap resamples of the
batches whose mean curve gives the same pick, and the runner-up depth (``pick_confidence``).

>>> result = L3Prune(batch_size=64, num_batches=100).select(model, load_triplets("triplets.jsonl"))
>>> result.small, result.large
(9, 27)
>>> result.prune(model, "large")   # cuts model[0] in place, then train it
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from tqdm.auto import tqdm

import st_prune.paper as paper
from st_prune.data.training_data import Prompts, TrainingData, to_training_data
from st_prune.data.triplets import TEXT_COLUMNS
from st_prune.errors import StPruneError
from st_prune.model import architectures
from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE, instruction_template
from st_prune.util.files import atomic_path, read_json, write_text_atomic
from st_prune.util.optional import require

logger = logging.getLogger(__name__)


PICKS = ("small", "large")
SCAN_FORMAT_VERSION = 1
#: Bootstrap resamples behind each pick's confidence: it only re-averages the stored per-batch losses, so 1000 cost
#: milliseconds and make the share's own resampling noise (< 1.6 points at 1 sigma) small beside what it measures.
BOOTSTRAP_RESAMPLES = 1000
#: A pick held in fewer resamples than this is reported as unsure (scan more batches).
CONFIDENT_SHARE = 0.8


# =====================================================================================================================
# The result: a curve, its picks, budgets, JSON, plot, pruning
# =====================================================================================================================
@dataclass
class L3PruneResult:
    """The per-depth loss curve of a scan and what follows from it.

    Lists are indexed by depth - 1: ``losses[k - 1]`` is the mean loss of a model that keeps k decoder layers.

    Attributes:
        losses: mean contrastive loss per depth, over the scan's batches.
        stds: standard deviation of the per-batch losses per depth (spread over batches).
        parameters: parameters of the whole SentenceTransformer when it keeps k layers (embeddings, k decoder layers,
            final norm, and the other modules), counted from the actual modules.
        other_parameters: parameters outside the decoder layers (embeddings, final norm, pooling, ...).
        latency_ratios: time of a k-layer forward relative to the full model; ``latency_source`` says whether they
            were ``"measured"`` (``measure_latency``) or are ``None`` (then ``best_under`` estimates them from FLOPs).
        batch_losses: the per-batch losses behind ``losses``, ``batch_losses[b][k - 1]`` (batches x depths); they
            make ``pick_confidence`` possible.
        small: argmin of ``losses`` over depths 1..L//2 (first minimum on ties): layers kept by the small pick.
        large: argmin over depths L//2+1..L (first minimum on ties).
    """

    losses: list[float]
    stds: list[float] | None = None
    parameters: list[int] | None = None
    other_parameters: int | None = None
    latency_ratios: list[float] | None = None
    latency_source: str | None = None
    model: str | None = None
    batch_size: int | None = None
    num_batches: int | None = None
    seed: int | None = None
    scale: float | None = None
    batch_losses: list[list[float]] | None = None
    small: int = field(init=False)
    large: int = field(init=False)

    def __post_init__(self) -> None:
        self.losses = [float(value) for value in self.losses]
        total = len(self.losses)
        if total < 2:
            raise StPruneError(f"an L3Prune curve needs at least 2 depths, got {total}; scan a model with 2+ layers")
        bad = [depth for depth, value in enumerate(self.losses, start=1) if not math.isfinite(value)]
        if bad:
            raise StPruneError(f"the loss at depth(s) {', '.join(map(str, bad))} is not finite; rerun the scan")
        for name in ("stds", "parameters", "latency_ratios"):
            values = getattr(self, name)
            if values is not None and len(values) != total:
                raise StPruneError(f"{name} has {len(values)} entries for {total} depths; give one per depth")
        if self.batch_losses is not None:
            self.batch_losses = _check_batch_losses(self.batch_losses, self.losses)
        self.small, self.large = select_depths(self.losses)

    # --- facts about depths ----------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """L, the depth of the scanned model."""
        return len(self.losses)

    @property
    def midpoint(self) -> int:
        """L // 2: the small pick keeps at most this many layers, the large pick more."""
        return self.num_layers // 2

    def pick(self, which: str | int) -> int:
        """Layers kept for ``"small"``, ``"large"`` or an explicit depth."""
        if which in PICKS:
            return getattr(self, str(which))
        if isinstance(which, int) and not isinstance(which, bool) and 1 <= which <= self.num_layers:
            return which
        raise StPruneError(f"pick 'small', 'large' or a depth in [1, {self.num_layers}], got {which!r}")

    def parameter_fraction_pruned(self, which: str | int) -> float:
        """Share of the model's parameters removed by keeping ``pick(which)`` layers."""
        if self.parameters is None:
            raise StPruneError("this result has no parameter counts; rerun the scan (L3Prune.select) to get them")
        return 1.0 - self.parameters[self.pick(which) - 1] / self.parameters[-1]

    def layer_fraction_pruned(self, which: str | int) -> float:
        """Share of decoder layers removed by keeping ``pick(which)`` layers."""
        return 1.0 - self.pick(which) / self.num_layers

    def estimated_latency_ratios(self) -> list[float]:
        """Per-token forward cost of a k-layer model relative to L layers, estimated from FLOPs.

        A decoder layer costs ~2 FLOPs per weight per token plus attention scores, both the same for every layer of a
        model, while the embedding lookup and final norm are negligible; so the estimate is the share of decoder-layer
        parameters kept (k / L when all layers are alike).
        """
        if self.parameters is None or self.other_parameters is None:
            return [depth / self.num_layers for depth in range(1, self.num_layers + 1)]
        base = self.other_parameters
        return [(count - base) / (self.parameters[-1] - base) for count in self.parameters]

    def best_under(
        self,
        *,
        max_params: float | None = None,
        max_layer_fraction: float | None = None,
        max_latency_ratio: float | None = None,
    ) -> int:
        """The depth with the lowest loss among those within every given budget (first minimum on ties).

        Args:
            max_params: at most this many parameters in the whole model (e.g. ``1e9`` for "under 1B").
            max_layer_fraction: keep at most this share of the decoder layers (``k / L <= max_layer_fraction``).
            max_latency_ratio: forward time at most this share of the full model's. Uses ``latency_ratios`` when
                they were measured (``measure_latency``), else the FLOPs estimate ``estimated_latency_ratios()``.

        Raises:
            StPruneError: when no depth fits, naming the smallest achievable value.
        """
        allowed = list(range(1, self.num_layers + 1))
        if max_params is not None:
            if self.parameters is None:
                raise StPruneError("this result has no parameter counts; rerun the scan to use max_params")
            allowed = [k for k in allowed if self.parameters[k - 1] <= max_params]
            if not allowed:
                raise StPruneError(
                    f"no depth fits max_params={max_params:,.0f}: one layer already has {self.parameters[0]:,} "
                    "parameters; raise the budget"
                )
        if max_layer_fraction is not None:
            allowed = [k for k in allowed if k <= max_layer_fraction * self.num_layers + 1e-9]
            if not allowed:
                raise StPruneError(
                    f"no depth fits max_layer_fraction={max_layer_fraction} (and the other budgets); "
                    f"one layer is {1 / self.num_layers:.3f} of the model"
                )
        if max_latency_ratio is not None:
            ratios = self.latency_ratios if self.latency_ratios is not None else self.estimated_latency_ratios()
            allowed = [k for k in allowed if ratios[k - 1] <= max_latency_ratio + 1e-9]
            if not allowed:
                raise StPruneError(
                    f"no depth fits max_latency_ratio={max_latency_ratio} (and the other budgets); "
                    f"the fastest depth has ratio {min(ratios):.3f}"
                )
        return min(allowed, key=lambda k: (self.losses[k - 1], k))

    # --- how sure the picks are ------------------------------------------------------------------------------------
    def pick_confidence(self, resamples: int = BOOTSTRAP_RESAMPLES, seed: int | None = None) -> dict[str, Any] | None:
        """Each pick's share of bootstrap resamples of the scan's batches in which it is still the pick.

        See ``pick_confidence`` (the module function); ``seed`` defaults to the scan's seed (0 if unknown). ``None`` without
        ``batch_losses`` or with a single batch (nothing to resample).
        """
        if self.batch_losses is None or len(self.batch_losses) < 2:
            return None
        if seed is None:  # the scan's seed, else a fixed one: the same result must always report the same shares
            seed = self.seed if self.seed is not None else 0
        return pick_confidence(self.batch_losses, resamples=resamples, seed=seed)

    def confidence_text(self, which: str, confidence: Mapping[str, Any] | None = None) -> str | None:
        """``"small = 5 (92 % of 1000 resamples; runner-up 6)"``, or ``None`` when there is no bootstrap."""
        confidence = self.pick_confidence() if confidence is None else confidence
        if confidence is None:
            return None
        entry = confidence[which]
        runner_up = "" if entry["runner_up"] is None else f"; runner-up {entry['runner_up']}"
        return f"{which} = {entry['depth']} ({100 * entry['share']:.0f} % of {confidence['resamples']} resamples{runner_up})"

    # --- pruning --------------------------------------------------------------------------------------------------
    def prune(self, model: SentenceTransformer, which: str | int = "small") -> SentenceTransformer:
        """Cut ``model``'s first module in place to ``pick(which)`` layers; returns the model.

        ``model`` must be the model the scan ran on (or one of the same depth).
        """
        depth = self.pick(which)
        module = model[0]
        current = len(architectures.decoder_layers(module.auto_model))
        if current != self.num_layers:
            raise StPruneError(
                f"this scan is of a {self.num_layers}-layer model but the model has {current} layers; "
                "prune the full-depth model the scan ran on"
            )
        if hasattr(module, "cut"):
            module.cut(depth)
        else:  # a plain sentence-transformers Transformer around a decoder LLM
            architectures.cut_model(module.auto_model, depth)
        return model

    # --- latency --------------------------------------------------------------------------------------------------
    def measure_latency(
        self,
        model: SentenceTransformer,
        texts: Sequence[str],
        depths: Sequence[int] | None = None,
        repeats: int = 3,
    ) -> list[float]:
        """Measure forward time at a few depths on ``texts`` (one batch) and store ratios for every depth.

        Depths between the measured ones are interpolated linearly. Sets ``latency_ratios`` and
        ``latency_source = "measured"``; returns the ratios.
        """
        ratios = measure_latency(model, texts, depths=depths, repeats=repeats)
        if len(ratios) != self.num_layers:
            raise StPruneError(f"the model has {len(ratios)} layers, this scan {self.num_layers}; time the same model")
        self.latency_ratios, self.latency_source = ratios, "measured"
        return ratios

    # --- files ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(num_layers=self.num_layers, small=self.small, large=self.large, version=SCAN_FORMAT_VERSION)
        if self.parameters is not None:
            data["parameter_fraction_pruned"] = {pick: self.parameter_fraction_pruned(pick) for pick in PICKS}
        data["layer_fraction_pruned"] = {pick: self.layer_fraction_pruned(pick) for pick in PICKS}
        data["pick_confidence"] = self.pick_confidence()  # derived (recomputed on load), stored for readers of the file
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``scan.json``: the curve, picks, parameter counts and the scan's settings."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")  # a full disk leaves no half file
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> L3PruneResult:
        """Read a ``scan.json`` written by ``save`` (only ``losses`` is required; the picks are recomputed)."""
        data = read_json(path, fix="write it with `st-prune scan` (or L3PruneResult.save)")
        if not isinstance(data, dict) or not isinstance(data.get("losses"), list):
            raise StPruneError(f"{path} has no 'losses' list; it is not an L3Prune scan file")
        known = {name for name in cls.__dataclass_fields__ if cls.__dataclass_fields__[name].init}
        result = cls(**{key: value for key, value in data.items() if key in known})
        for pick in PICKS:
            if pick in data and data[pick] != getattr(result, pick):
                logger.warning("%s says %s=%s; the curve gives %s", path, pick, data[pick], getattr(result, pick))
        return result

    def plot(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """Save a PNG of the curve (spread shaded) with the midpoint and both picks marked."""
        matplotlib = require("matplotlib", "plotting the L3Prune curve")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        depths = np.arange(1, self.num_layers + 1)
        losses = np.asarray(self.losses)
        figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
        axes.plot(depths, losses, color="tab:gray", marker=".", linewidth=1.2, label="mean loss")
        if self.stds is not None:
            spread = np.asarray(self.stds)
            axes.fill_between(depths, losses - spread, losses + spread, color="tab:gray", alpha=0.15, label="± std")
        axes.axvline(
            self.midpoint + 0.5,
            color="black",
            linestyle=":",
            linewidth=1,
            label=f"midpoint (L/2 = {self.num_layers / 2:g})",
        )
        confidence = self.pick_confidence()
        for pick, color in (("small", "tab:orange"), ("large", "tab:blue")):
            depth = self.pick(pick)
            label = f"{pick}: {depth}/{self.num_layers} layers"
            if self.parameters is not None:
                label += f", {self.parameter_fraction_pruned(pick):.0%} params pruned"
            if confidence is not None:
                label += f"\n{self.confidence_text(pick, confidence)}"
            axes.scatter([depth], [losses[depth - 1]], s=90, color=color, zorder=3, label=label)
        axes.set_xlabel("decoder layers kept")
        axes.set_ylabel("contrastive loss before training")
        axes.set_title(title or f"L3Prune scan{f' of {self.model}' if self.model else ''}")
        axes.set_xlim(0.5, self.num_layers + 0.5)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = Path(path)
        try:
            with atomic_path(path) as temporary:  # a full disk leaves no half image
                figure.savefig(temporary, format="png")
        finally:
            plt.close(figure)
        return path

    def summary(self) -> str:
        """Human-readable lines: both picks with their losses and parameter counts."""
        lines = []
        confidence = self.pick_confidence()
        for pick in PICKS:
            depth = self.pick(pick)
            line = f"{pick}: keep {depth}/{self.num_layers} layers (loss {self.losses[depth - 1]:.4f}"
            if self.parameters is not None:
                line += (
                    f", {self.parameters[depth - 1] / 1e6:,.1f}M of {self.parameters[-1] / 1e6:,.1f}M parameters, "
                    f"{self.parameter_fraction_pruned(pick):.1%} pruned"
                )
            lines.append(line + ")")
            if confidence is not None:
                entry = confidence[pick]
                line = (
                    f"  the pick in {100 * entry['share']:.0f} % of {confidence['resamples']} bootstrap resamples of "
                    f"the {confidence['batches']} batches"
                )
                if entry["runner_up"] is not None:
                    line += f"; runner-up {entry['runner_up']} layers ({100 * entry['runner_up_share']:.0f} %)"
                if entry["share"] < CONFIDENT_SHARE:
                    line += f"; under {100 * CONFIDENT_SHARE:.0f} %: scan more batches for a surer pick"
                lines.append(line)
        return "\n".join(lines)


def select_depths(losses: Sequence[float]) -> tuple[int, int]:
    """The paper's rule: ``small = argmin(loss[1..L//2])``, ``large = argmin(loss[L//2+1..L])``, as layers kept.

    Ties go to the smaller depth (the first minimum).
    """
    total = len(losses)
    if total < 2:
        raise StPruneError(f"L3Prune needs a model with at least 2 layers, got {total}")
    half = total // 2
    small = min(range(1, half + 1), key=lambda depth: (losses[depth - 1], depth))
    large = min(range(half + 1, total + 1), key=lambda depth: (losses[depth - 1], depth))
    return small, large


def pick_confidence(
    batch_losses: Sequence[Sequence[float]] | np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """How sure each pick is: the share of bootstrap resamples of the batches in which it is still the pick.

    Each resample draws as many batches as the scan has, with replacement (seeded), averages their per-depth losses
    and applies ``select_depths``' rule (first minimum in each half) to that curve. Per pick it reports ``depth`` (the
    pick of the mean over all batches), ``share`` (resamples picking it), and ``runner_up``: the other depth of that
    half picked most often (on no or equal counts, the one with the lower mean loss), with ``runner_up_share``;
    ``None`` when the half has a single depth. Batches are the resampled unit because they are the scan's
    independent draws: in-batch negatives tie the rows of one batch together.

    Args:
        batch_losses: ``batches x depths`` per-batch losses (``L3PruneResult.batch_losses``); at least 2 batches.
        resamples: how many bootstrap curves.
        seed: seed of the resampling; the same seed gives the same shares.
    """
    losses = np.asarray(batch_losses, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[0] < 2 or losses.shape[1] < 2:
        raise StPruneError(
            f"the bootstrap needs per-batch losses of at least 2 batches x 2 depths, got shape {losses.shape}; "
            "scan more batches"
        )
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise StPruneError(f"resamples must be a positive integer, got {resamples!r}")
    batches, total = losses.shape
    # A bootstrap resample is fully described by how often it draws each batch: multinomial counts, so every
    # resampled curve is one weighted mean (resamples x batches @ batches x depths), with no resamples x batches x
    # depths array however many batches the scan has.
    counts = np.random.default_rng(seed).multinomial(batches, np.full(batches, 1.0 / batches), size=resamples)
    curves = counts @ losses / batches
    half = total // 2
    mean = losses.mean(axis=0)
    chosen = {
        "small": curves[:, :half].argmin(axis=1) + 1,  # argmin keeps the first minimum: select_depths' tie rule
        "large": curves[:, half:].argmin(axis=1) + half + 1,
    }
    report: dict[str, Any] = {
        "method": "bootstrap over batches",
        "resamples": resamples,
        "seed": seed,
        "batches": batches,
    }
    for name, depth in zip(PICKS, select_depths(mean.tolist())):
        wins = np.bincount(chosen[name], minlength=total + 1)
        span = range(1, half + 1) if name == "small" else range(half + 1, total + 1)
        others = sorted((depth_ for depth_ in span if depth_ != depth), key=lambda k: (-wins[k], mean[k - 1], k))
        runner_up = others[0] if others else None
        report[name] = {
            "depth": depth,
            "share": float(wins[depth] / resamples),
            "runner_up": runner_up,
            "runner_up_share": float(wins[runner_up] / resamples) if runner_up is not None else 0.0,
        }
    return report


def _check_batch_losses(batch_losses: Sequence[Sequence[float]], losses: Sequence[float]) -> list[list[float]]:
    """Per-batch losses as float lists, refused unless they are finite, one per depth, and average to ``losses``."""
    try:
        array = np.asarray(batch_losses, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise StPruneError(f"batch_losses must be a list of per-depth loss lists ({error}); rerun the scan") from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != len(losses):
        raise StPruneError(
            f"batch_losses has shape {array.shape}, expected (batches, {len(losses)}): one loss per depth per batch; "
            "rerun the scan"
        )
    if not np.isfinite(array).all():
        raise StPruneError("batch_losses holds a non-finite loss; rerun the scan")
    # The bootstrap and the picks must describe the same scan: a file edited by hand could make them disagree.
    if not np.allclose(array.mean(axis=0), losses, rtol=1e-9, atol=1e-12):
        raise StPruneError("batch_losses do not average to losses: they are from another scan; rerun the scan")
    return array.tolist()


# =====================================================================================================================
# The selector
# =====================================================================================================================
@dataclass
class L3Prune:
    """The scan's settings. ``L3Prune().select(model, data)`` -> ``L3PruneResult``.

    Args:
        batch_size: rows per batch (in-batch negatives: the loss depends on it, so use training's batch size).
        num_batches: batches to average over. The paper uses 64 x 100.
        seed: seed of the row sampling.
        scale: InfoNCE scale (1 / temperature) of ``MultipleNegativesRankingLoss``; the paper's training uses 50.
        show_progress_bar: a tqdm bar over batches.
    """

    batch_size: int = paper.SCAN_BATCH_SIZE
    num_batches: int = paper.SCAN_BATCHES
    seed: int = paper.SEED
    scale: float = paper.INFONCE_SCALE
    show_progress_bar: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise StPruneError(
                f"batch_size must be an integer >= 2 (in-batch negatives need 2+ rows), got {self.batch_size!r}"
            )
        if isinstance(self.num_batches, bool) or not isinstance(self.num_batches, int) or self.num_batches < 1:
            raise StPruneError(f"num_batches must be a positive integer, got {self.num_batches!r}")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) or self.scale <= 0:
            raise StPruneError(f"scale must be a positive number (the paper uses 50), got {self.scale!r}")

    def sample(
        self, data: TrainingData | Any, prompts: Prompts = None, template: str = QUERY_PROMPT_TEMPLATE
    ) -> list[ScanBatch]:
        """The batches the scan will use: validated data, grouped like the trainer groups it, sampled with ``seed``.

        Each batch comes from one dataset (one instruction), as sentence-transformers' multi-dataset samplers do.
        Every dataset is shuffled and cut into full batches; ``num_batches`` of all those batches are drawn, so
        datasets count in proportion to their size and data of exactly ``batch_size * num_batches`` rows is used
        whole. Fewer available batches than ``num_batches``: all of them are used (with a warning). ``template`` is
        the instruction format of the model scanned (``st_prune.prompt_format.instruction_template``).
        """
        prepared = to_training_data(
            data, prompts, template
        )  # the trainer's datasets and prompts (st_prune.data.training_data)
        datasets = prepared.datasets
        rng = np.random.default_rng(self.seed)
        pool: list[tuple[str, np.ndarray]] = []
        for name in sorted(datasets):
            order = rng.permutation(len(datasets[name]))
            pool.extend(
                (name, order[start : start + self.batch_size])
                for start in range(0, len(order) - self.batch_size + 1, self.batch_size)
            )
        if not pool:
            largest = max(len(dataset) for dataset in datasets.values())
            raise StPruneError(
                f"the data has {largest} rows{' in its largest dataset' if len(datasets) > 1 else ''}, fewer than one "
                f"batch of {self.batch_size}; lower the batch size or add data"
            )
        if len(pool) < self.num_batches:
            logger.warning(
                "the data holds %d full batches of %d; scanning all of them instead of %d",
                len(pool),
                self.batch_size,
                self.num_batches,
            )
        chosen = [pool[index] for index in rng.permutation(len(pool))[: self.num_batches]]
        batches = []
        for name, indices in chosen:
            rows = datasets[name][indices.tolist()]
            columns = {column: rows[column] for column in TEXT_COLUMNS if column in rows}
            batches.append(ScanBatch(columns, {column: prepared.prompt(name, column) for column in columns}))
        return batches

    def select(self, model: SentenceTransformer, data: TrainingData | Any, prompts: Prompts = None) -> L3PruneResult:
        """Scan every depth of ``model`` on ``data`` and return the curve with its small and large picks.

        Args:
            model: a SentenceTransformer whose first module holds a decoder LLM (e.g. ``encoder_from_llm(...)`` at full
                depth), followed by its pooling (and Normalize). The model is not modified.
            data: what the trainer takes (``st_prune.data.training_data.to_training_data``): a Dataset or a
                JSONL/CSV/Parquet path (an ``instruction`` column becomes the anchor's prompt), a DatasetDict, an E5-mix
                folder or a ``TrainingData``.
            prompts: the ``prompts`` you will give the trainer, for data without an ``instruction`` column.
        """
        # All data errors come before any model work; instructions in the model's own format (a trained embedder's).
        batches = self.sample(data, prompts, instruction_template(getattr(model, "prompts", None)))
        return scan(
            model,
            batches,
            scale=self.scale,
            show_progress_bar=self.show_progress_bar,
            settings={"batch_size": self.batch_size, "num_batches": len(batches), "seed": self.seed},
        )


@dataclass
class ScanBatch:
    """One batch: the texts of each column (anchor, positive[, negative]) and each column's prompt."""

    texts: dict[str, list[str]]
    prompts: dict[str, str | None]


# =====================================================================================================================
# The scan: one forward per text batch, hooks pool every layer
# =====================================================================================================================
class LayerTap:
    """Forward hooks that turn each decoder layer's output into the pooled embedding a model cut there would give.

    Inside ``with LayerTap(model) as tap:`` every forward of ``model[0]`` with ``tap.features`` set to its input
    features fills ``tap.pooled[i]`` (a ``B x H`` tensor) with ``model[1:](final_norm(output of layer i))``: the
    model's own Pooling (prompt tokens excluded, any padding side) and Normalize run on a copy of the features
    whose ``token_embeddings`` are the normed layer output. Nothing ``B x T x H`` outlives its hook.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        auto_model = model[0].auto_model
        self.layers = architectures.decoder_layers(auto_model)
        self.norm = architectures.final_norm(auto_model)
        self.heads = [model[index] for index in range(1, len(model))]
        self.features: dict[str, Any] | None = None
        self.pooled: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list[Any] = []

    def __enter__(self) -> LayerTap:  # noqa: PYI034
        for index, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_hook(self._hook(index)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.features = None

    def _hook(self, index: int):
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            features = dict(self.features)
            features["token_embeddings"] = self.norm(hidden)
            for head in self.heads:
                features = head(features)
            self.pooled[index] = features["sentence_embedding"]

        return hook

    def run(self, model: SentenceTransformer, features: dict[str, Any]) -> torch.Tensor:
        """Forward ``features`` once; returns ``L x B x H`` pooled embeddings, one per depth."""
        self.features = features
        self.pooled = [None] * len(self.layers)
        model[0](dict(features))
        missing = [index + 1 for index, value in enumerate(self.pooled) if value is None]
        if missing:
            raise StPruneError(f"decoder layer(s) {missing} did not run in the forward; the scan needs every layer")
        return torch.stack(self.pooled)  # type: ignore[arg-type]


def scan(
    model: SentenceTransformer,
    batches: Sequence[ScanBatch],
    *,
    scale: float = 50.0,
    show_progress_bar: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> L3PruneResult:
    """Per-depth mean and spread of ``MultipleNegativesRankingLoss(scale)`` over ``batches``, in one pass each.

    Columns that share a prompt (e.g. positive and negative) are tokenized and run together; each column keeps its own
    prompt, so prompt exclusion is exactly the trainer's. Losses are computed in float32 with sentence-transformers'
    own ``MultipleNegativesRankingLoss.compute_loss_from_embeddings``. A non-finite loss stops the scan with its depth.
    """
    total = _check_model(model)
    loss_fn = MultipleNegativesRankingLoss(model, scale=scale)
    device = model.device
    per_batch = np.zeros((len(batches), total), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), LayerTap(model) as tap:
            progress = tqdm(batches, desc="L3Prune scan", unit="batch", disable=not show_progress_bar)
            for number, batch in enumerate(progress):
                embeddings = embed_batch(model, tap, batch, device)
                columns = list(batch.texts)
                losses = [
                    loss_fn.compute_loss_from_embeddings([embeddings[c][depth].float() for c in columns], None)
                    for depth in range(total)
                ]
                per_batch[number] = (
                    torch.stack(losses).double().cpu().numpy()
                )  # one device sync per batch, not per depth
                bad = [depth + 1 for depth in range(total) if not math.isfinite(per_batch[number, depth])]
                if bad:
                    raise StPruneError(
                        f"the loss is {per_batch[number, bad[0] - 1]} at depth(s) {', '.join(map(str, bad))} "
                        f"(batch {number}); the model overflows there: load it in float32 with --dtype float32 "
                        "(st-prune scan/train/run; --set base.dtype=float32 in a recipe; "
                        "encoder_from_llm(..., dtype='float32') in Python) or check the weights"
                    )
    finally:
        model.train(was_training)
    parameters = parameters_per_depth(model)
    return L3PruneResult(
        losses=per_batch.mean(axis=0).tolist(),
        stds=per_batch.std(axis=0).tolist(),
        batch_losses=per_batch.tolist(),  # kept so the picks' bootstrap confidence can be computed (and recomputed)
        parameters=parameters[1:],
        other_parameters=parameters[0],
        model=_model_reference(model),
        scale=float(scale),
        **dict(settings or {}),
    )


def embed_batch(
    model: SentenceTransformer, tap: LayerTap, batch: ScanBatch, device: torch.device
) -> dict[str, torch.Tensor]:
    """Column -> ``L x B x H`` embeddings at every depth; one forward per distinct prompt."""
    by_prompt: dict[str | None, list[str]] = {}
    for column in batch.texts:
        by_prompt.setdefault(batch.prompts.get(column), []).append(column)
    embeddings: dict[str, torch.Tensor] = {}
    for prompt, columns in by_prompt.items():
        texts = [text for column in columns for text in batch.texts[column]]
        features = _to_device(model.preprocess(texts, prompt=prompt), device)
        pooled = tap.run(model, features)
        start = 0
        for column in columns:
            size = len(batch.texts[column])
            embeddings[column] = pooled[:, start : start + size]
            start += size
    return embeddings


def _to_device(features: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}


def _check_model(model: SentenceTransformer) -> int:
    if not isinstance(model, SentenceTransformer) or len(model) < 2 or not hasattr(model[0], "auto_model"):
        raise StPruneError(
            "the scan needs a SentenceTransformer of a decoder LLM and its pooling, e.g. st_prune.encoder_from_llm(path)"
        )
    total = len(architectures.decoder_layers(model[0].auto_model))
    if total < 2:
        raise StPruneError(f"the model has {total} decoder layer; L3Prune needs at least 2 (load it at full depth)")
    return total


def parameters_per_depth(model: SentenceTransformer) -> list[int]:
    """Parameters of the whole model if it kept k = 0..L layers (index k), counted from the actual modules.

    Index 0 is everything outside the decoder layers (embeddings, final norm, pooling...); a parameter shared by
    several modules counts once.
    """
    layers = architectures.decoder_layers(model[0].auto_model)
    seen: set[int] = set()
    per_layer = []
    for layer in layers:
        count = 0
        for parameter in layer.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                count += parameter.numel()
        per_layer.append(count)
    rest = sum(parameter.numel() for parameter in model.parameters() if id(parameter) not in seen)
    return [rest + int(sum(per_layer[:depth])) for depth in range(len(layers) + 1)]


def _model_reference(model: SentenceTransformer) -> str | None:
    provenance = getattr(model[0], "provenance", None)
    if isinstance(provenance, dict) and provenance.get("base_model"):
        return str(provenance["base_model"])
    name = getattr(getattr(model[0].auto_model, "config", None), "_name_or_path", None)
    return os.path.basename(str(name).rstrip("/")) or None if name else None


# =====================================================================================================================
# Measured latency
# =====================================================================================================================
class _StopForward(Exception):
    pass


def measure_latency(
    model: SentenceTransformer,
    texts: Sequence[str],
    depths: Sequence[int] | None = None,
    repeats: int = 3,
) -> list[float]:
    """Forward time of a k-layer model relative to the full model, for k = 1..L, measured on one batch of ``texts``.

    The model is not cut: a pre-hook on layer k+1 stops the forward there, so the time is that of the embeddings plus
    k layers (the final norm and pooling, negligible, are left out). Default depths: 1, L/4, L/2, 3L/4, L; the rest
    are interpolated linearly. Each depth keeps the best of ``repeats`` timed runs after one warm-up.
    """
    total = _check_model(model)
    depths = sorted(set(depths or (1, max(1, total // 4), max(1, total // 2), max(1, 3 * total // 4), total)) | {total})
    if depths[0] < 1 or depths[-1] > total:
        raise StPruneError(f"latency depths must lie in [1, {total}], got {depths}")
    layers = architectures.decoder_layers(model[0].auto_model)
    features = _to_device(model.preprocess(list(texts)), model.device)

    def stop(*_: Any) -> None:
        raise _StopForward

    def forward() -> None:
        try:
            model[0](dict(features))
        except _StopForward:
            pass
        if features["input_ids"].device.type == "cuda":
            torch.cuda.synchronize()

    timings: dict[int, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            forward()  # warm-up
            for depth in depths:
                handle = layers[depth].register_forward_pre_hook(stop) if depth < total else None
                try:
                    best = math.inf
                    for _ in range(max(1, repeats)):
                        start = time.perf_counter()
                        forward()
                        best = min(best, time.perf_counter() - start)
                    timings[depth] = best
                finally:
                    if handle is not None:
                        handle.remove()
    finally:
        model.train(was_training)
    measured = np.interp(np.arange(1, total + 1), depths, [timings[depth] for depth in depths])
    return (measured / timings[total]).tolist()
