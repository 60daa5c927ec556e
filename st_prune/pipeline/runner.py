"""The stage runner behind ``st-prune run``: it orders the stages, keeps their markers, holds the DDP barriers, and
prints the plan (``--dry-run``) and the summary. What each stage does, depends on and writes is the stage's own
(``st_prune.pipeline.stages``); where it writes is the run folder's (``st_prune.pipeline.run_folder``).

Each stage writes its files under the run folder and, last, an atomic marker (``DIR/stages/<stage>[.<variant>].json``)
holding its key. A re-run skips every stage whose marker holds the same key, so an interrupted run resumes where it
stopped, and a changed setting re-runs only the stages downstream of it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from st_prune.errors import StPruneError
from st_prune.pipeline.context import RunContext
from st_prune.pipeline.run_folder import RunFolder
from st_prune.pipeline.schema import Recipe, VariantSpec
from st_prune.pipeline.stage import Stage
from st_prune.pipeline.stages import BY_NAME, PIPELINE, STAGES
from st_prune.pipeline.stages.scan import SCAN
from st_prune.pipeline.usage import usage_table
from st_prune.util.machine import machine_description
from st_prune.util.resources import measure_usage, process_peak_rss_bytes, release_memory
from st_prune.util.run_lock import hold_run_lock


class RecipeRunner:
    """Runs a recipe's stages into ``output``.

    ``push_to_hub`` (an org) enables the publish stage; ``only`` runs a single stage (its inputs must exist);
    ``zoo_index`` is an extra folder (e.g. the repo's ``model_cards/``) whose zoo.json/README.md are updated.
    """

    def __init__(
        self,
        recipe: Recipe,
        output: str | os.PathLike,
        *,
        push_to_hub: str | None = None,
        only: str | None = None,
        zoo_index: str | os.PathLike | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if only is not None and only not in STAGES:
            raise StPruneError(f"--only {only!r}: use one of {', '.join(STAGES)}")
        self.recipe = recipe
        self.folder = RunFolder(output)
        self.ctx = RunContext(recipe, self.folder, org=push_to_hub, token=token, endpoint=endpoint, log=log)
        self.only = only
        self.zoo_index = Path(zoo_index) if zoo_index else None
        self.calls: dict[str, int] = {}  # stage name -> times its work ran (for tests and the summary)
        self.usage: list[dict[str, Any]] = []  # stages run by this process: label, seconds, peak_rss_gb

    @property
    def output(self) -> Path:
        return self.folder.root

    # --- plan and checks --------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        stages = [BY_NAME[self.only]] if self.only else list(PIPELINE)
        return [stage for stage in stages if stage.name != "publish" or self.ctx.org]

    def targets(self, stage: Stage) -> list[VariantSpec | None]:
        """What ``stage`` runs for: once (the scan), or each variant it applies to (a teacher trains first)."""
        if not stage.per_variant:
            return [None]
        variants = self.recipe.training_order() if stage.name == "train" else self.recipe.variants
        return [variant for variant in variants if stage.applies(self.ctx, variant)]

    def stage_key(self, stage: Stage, variant: VariantSpec | None = None) -> Any:
        """The key of what ``stage`` depends on; None while it cannot be known yet (a variant's layers come from a
        scan that has to run again)."""
        if variant is None or variant.layers is not None or self.scan_is_current():
            layers = None if variant is None else self.ctx.layers_of(variant)
        else:
            layers = None  # a pick or a fraction: known from a scan of these settings only
        return stage.marker_key(self.ctx, variant, layers)

    def scan_is_current(self) -> bool:
        """The run folder holds a finished scan of this recipe's scan settings (its picks hold for these settings)."""
        return self._is_done(SCAN, None, SCAN.key(self.recipe))

    def _is_done(self, stage: Stage, variant: VariantSpec | None, key: Any = None) -> bool:
        marker = self.folder.marker_data(stage.name, variant.name if variant else None)
        return marker is not None and (key is None or marker.get("key") == key)

    def plan(self) -> str:
        """The resolved settings and the stages × variants table (``--dry-run``)."""
        recipe = self.recipe
        lines = [f"recipe {recipe.name} ({recipe.digest()}) -> {self.output}", "settings:"]
        lines += ["  " + line for line in yaml.safe_dump(recipe.to_dict(), sort_keys=False).splitlines()]
        lines.append("plan:")
        for stage in self.stages():
            for variant in self.targets(stage):
                key = None if stage.name == "publish" else self.stage_key(stage, variant)
                done = (
                    self._is_done(stage, variant)
                    if stage.name == "publish"
                    else (key is not None and self._is_done(stage, variant, key))
                )
                detail = "" if variant is None else f" {stage.describe(self.ctx, variant)}"
                lines.append(f"  {stage.name:<9}{detail} ({'done, skipped' if done else 'to run'})")
        if not self.ctx.org:
            lines.append("  publish   (off: pass --push-to-hub ORG; the zoo is the local folder)")
        return "\n".join(lines)

    def preflight(self) -> None:
        """Every check that can fail fast, before any long work (``st_prune.pipeline.preflight.check_run``)."""
        from st_prune.pipeline.preflight import check_run

        check_run(
            self.ctx,
            [stage.name for stage in self.stages()],
            zoo_index=self.zoo_index,
            only=self.only,
            scan_is_current=self.scan_is_current,
        )

    # --- run ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) every stage; returns a summary {variant: {repo_id, folder, layers, score}}."""
        from st_prune.util import distributed

        if self.only == "publish" and not self.ctx.org:
            raise StPruneError("--only publish needs --push-to-hub ORG")
        # Under torchrun / accelerate launch: join the process group now, so that the other ranks can wait at a
        # barrier while rank 0 checks, scans and prunes (it alone writes outside training).
        distributed.start()
        if not distributed.is_main():
            return self._run_beside_rank_0()
        self.preflight()
        # One writer per run folder: a second `st-prune run` on it is refused while this one works (rank 0 holds
        # the lock for the whole run; the other ranks of a torchrun run returned above).
        with hold_run_lock(self.output):
            return self._run_as_rank_0()

    def _run_as_rank_0(self) -> dict[str, Any]:
        from st_prune.pipeline.run_folder import adopt_earlier_model_folders
        from st_prune.util import distributed

        adopt_earlier_model_folders(self.ctx)  # a run folder of an st-prune from before the record of its files
        self.folder.write(self.folder.run_file, {"recipe": self.recipe.name, "hash": self.recipe.digest()})
        self.folder.recipe_file.write_text(yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        started = time.perf_counter()
        stages, train_at = self.stages(), STAGES.index("train")
        self._run_stages([stage for stage in stages if STAGES.index(stage.name) < train_at])
        distributed.wait_for_everyone()  # the other ranks waited here: the scan's picks and prune records exist
        self._run_stages([stage for stage in stages if stage.name == "train"])
        distributed.finish()  # the other ranks exit after training; rank 0 goes on alone
        self._run_stages([stage for stage in stages if STAGES.index(stage.name) > train_at])
        if not self.only or self.only in ("card", "publish"):
            self.update_zoo_index()
        total = time.perf_counter() - started
        self.ctx.log(self.usage_table(total))
        self.ctx.log(f"st-prune run {self.recipe.name}: finished in {total:.0f}s -> {self.output}")
        return self.summary()

    def _run_stages(self, stages: list[Stage]) -> None:
        for stage in stages:
            for variant in self.targets(stage):
                self.run_stage(stage, variant)
                release_memory()  # the stage's model is unreferenced now: free it before the next one loads

    def run_stage(self, stage: Stage, variant: VariantSpec | None = None) -> None:
        """One stage for one variant: its inputs checked, skipped when its marker holds its key, else run."""
        stage.check_inputs(self.ctx, variant)
        key = self.stage_key(stage, variant)
        with self._marked(stage, variant, key) as info:
            if info is not None:
                info.update(stage.run(self.ctx, variant) or {})
        stage.finish(self.ctx, variant, key)

    @contextmanager
    def _marked(self, stage: Stage, variant: VariantSpec | None, key: Any) -> Iterator[dict[str, Any] | None]:
        """Yields None when the stage is done (skip), else a dict the body fills; writes the marker last."""
        from st_prune.util import distributed

        label = f"{stage.name}[{variant.name}]" if variant else stage.name
        marker = self.folder.marker(stage.name, variant.name if variant else None)
        if self._is_done(stage, variant, key):
            self.ctx.log(f"[skip] {label}: done earlier")
            earlier = self.folder.read(marker)
            self.usage.append(
                {
                    "stage": label,
                    "seconds": earlier.get("seconds"),
                    "peak_rss_gb": earlier.get("peak_rss_gb"),
                    **({"peak_gpu_gb": earlier["peak_gpu_gb"]} if "peak_gpu_gb" in earlier else {}),
                    "earlier": True,
                }
            )
            yield None
            return
        self.ctx.log(f"[run ] {label} ...")
        info: dict[str, Any] = {}
        with measure_usage() as usage:
            yield info
        self.calls[stage.name] = self.calls.get(stage.name, 0) + 1
        gpu = {} if usage.peak_gpu_gb is None else {"peak_gpu_gb": round(usage.peak_gpu_gb, 2)}
        self.usage.append(
            {"stage": label, "seconds": round(usage.seconds, 1), "peak_rss_gb": round(usage.peak_rss_gb, 2), **gpu}
        )
        if not distributed.is_main():  # the other ranks of a torchrun run train beside rank 0, which keeps the markers
            return
        self.folder.write(
            marker,
            {
                "stage": stage.name,
                "variant": variant.name if variant else None,
                "key": key,
                "seconds": round(usage.seconds, 1),
                "peak_rss_gb": round(usage.peak_rss_gb, 2),
                **gpu,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **info,
            },
        )
        self.ctx.log(f"[done] {label} in {usage.seconds:.1f}s, peak memory {usage.peak_rss_gb:.2f} GB")

    def _run_beside_rank_0(self) -> dict[str, Any]:
        """A rank other than 0, quiet (rank 0 prints the log; errors still show): wait for rank 0's checks, scan and
        prune, train every variant beside it (DDP), exit."""
        from st_prune.util import distributed

        self.ctx.log = lambda _line: None
        logging.getLogger("st_prune").setLevel(logging.ERROR)
        distributed.wait_for_everyone()
        self._run_stages([stage for stage in self.stages() if stage.name == "train"])
        distributed.finish()
        return {}

    # --- summary --------------------------------------------------------------------------------------
    def usage_table(self, total_seconds: float) -> str:
        """The per-stage summary README's time and memory figures are copied from (also in DIR/summary.json)."""
        peak, machine = process_peak_rss_bytes() / 1e9, machine_description()
        self.folder.write(
            self.folder.summary_file,
            {
                "recipe": self.recipe.name,
                "machine": machine,
                "seconds": round(total_seconds, 1),
                "peak_rss_gb": round(peak, 2),
                "stages": self.usage,
            },
            sort_keys=False,
        )
        return usage_table(self.usage, total_seconds, peak, machine)

    def summary(self) -> dict[str, Any]:
        result = {}
        for variant in self.recipe.variants:
            layers = self.ctx.layers_of(variant)
            entry: dict[str, Any] = {"repo_id": self.ctx.repo_id(variant), "layers": layers}
            if layers is not None and self.ctx.zoo_dir(variant).is_dir():
                entry["folder"] = str(self.ctx.zoo_dir(variant))
            evaluation = self.folder.record(variant.name, BY_NAME["evaluate"].record)
            if evaluation is not None:
                entry["score"] = evaluation.get("average")
            result[variant.name] = entry
        return result

    def update_zoo_index(self) -> None:
        """The zoo index rows of every variant with a card, into DIR/models/ and the --zoo-index folder."""
        from st_prune.pipeline.stages.zoo_index import update_zoo_index, zoo_entry

        ctx, entries = self.ctx, []
        for variant in self.recipe.variants:
            export = self.folder.record(variant.name, BY_NAME["export"].record)
            if not self.folder.marker("card", variant.name).is_file() or export is None:
                continue
            entries.append(
                zoo_entry(
                    recipe=self.recipe.name,
                    variant=variant.name,
                    base_model=self.recipe.base_id,
                    repo_id=ctx.repo_id(variant),
                    prune=self.folder.record(variant.name, BY_NAME["prune"].record, stage="prune"),
                    final=ctx.final_record(variant),
                    evaluation=self.folder.record(variant.name, BY_NAME["evaluate"].record),
                    folder=ctx.zoo_dir(variant),
                    published=self.folder.marker("publish", variant.name).is_file() and ctx.org is not None,
                )
            )
        for folder, flag in ((self.folder.models_dir, "--output"), (self.zoo_index, "--zoo-index")) if entries else ():
            if folder is not None:
                update_zoo_index(folder, entries, flag)
