"""The training settings, defined once: ``TrainingConfig`` (the library's), the recipe's ``training:`` section
(``TrainingSpec``, derived from it) and ``st-prune train``'s flags (``st_prune.commands.train``, generated from it).

Each setting's type, range, default and help live on its ``TrainingConfig`` field. The recipe section spells two of
them its own way (``steps`` for ``max_steps``, ``lora: {r, alpha, dropout, target_modules}`` for ``lora_*``) and
takes everything else from the field: ``TrainingSpec.config()`` is the same settings as a ``TrainingConfig``.

Where the recipe and the library used to differ, the one default is ``None`` = automatic, resolved the same way for
both:

- ``warmup_steps``: 30 % of the steps (``effective_warmup_steps``), the paper's 300 of 1000;
- ``bf16``: on when the CUDA GPU supports bfloat16; ``gradient_checkpointing``: on when training on a CUDA GPU;
- ``max_seq_length``: the base model's length (``sequence_length``): 512, the paper's, or in a recipe
  ``base.max_seq_length`` (whose default is 512).

No torch at import: the recipe schema imports this module and every ``st-prune`` command imports the schema (the
automatic bf16 and gradient checkpointing import it when they are resolved).
"""

# ruff: noqa: RUF009  (`setting` is `dataclasses.field` with the help and recipe key attached)
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import st_prune.paper as paper
from st_prune.errors import StPruneError
from st_prune.paper import PAPER_LORA_TARGETS
from st_prune.util.settings import (
    SEED_MAX,
    Bool,
    Int,
    Number,
    Str,
    limits,
    spec,
    unwrap,
)

#: Tokens per training text when nothing says otherwise (the paper's; a recipe's ``base.max_seq_length`` default).
DEFAULT_MAX_SEQ_LENGTH = 512
DISTANCES = ("cosine", "mse", "l2")  # EmbedDistillLoss's metrics: the student's distance to the teacher


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    recipe: str | None = None,
    **cli: Any,
) -> Any:
    """A ``TrainingConfig`` field: its default, its help, its recipe key (where the recipe spells it otherwise) and
    ``st-prune train`` flag options (``flag``: the flag's other spellings, ``metavar``)."""
    metadata = {"help": help, "recipe": recipe, "cli": cli}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


Seed = Annotated[Int, limits(ge=0, le=SEED_MAX)]


@dataclass
class TrainingConfig:
    """The paper's training setup (Thennal D K et al., arXiv 2410.14578); every field can be overridden
    (``TrainingConfig(max_steps=200)``). Each field's help is its documentation (``TrainingConfig.help(name)``, and
    ``st-prune train --help``).

    ``None`` means automatic, resolved the same way for a recipe and the library: ``warmup_steps`` 30 % of
    ``max_steps`` (``effective_warmup_steps``: 300 of 1000); ``bf16`` on where the CUDA GPU supports bfloat16 and
    ``gradient_checkpointing`` on a CUDA GPU (``st_prune.training.trainer.use_bf16`` / ``use_gradient_checkpointing``);
    ``max_seq_length`` the base model's length (``sequence_length``: 512, or a recipe's ``base.max_seq_length``). The
    recipe's section had fixed defaults (300, false, false), the library these automatic ones; every shipped recipe
    sets the first three, so it trains as before."""

    max_steps: Annotated[Int, limits(ge=1)] = setting(
        1000, "optimizer steps (paper: 1000)", recipe="steps", metavar="N"
    )
    batch_size: Annotated[Int, limits(ge=2, note="in-batch negatives")] = setting(
        64,
        "triplets per batch and process; under DDP the loss sees batch_size x processes candidates when "
        "gather_across_devices (paper: 64 in total)",
        metavar="B",
    )
    learning_rate: Annotated[Number, limits(gt=0, note="the paper uses 2e-4")] = setting(
        2e-4, "peak learning rate of the linear schedule (paper: 2e-4)", metavar="LR"
    )
    warmup_steps: Annotated[Int | None, limits(ge=0)] = setting(
        None, "linear warm-up steps; default 30 % of the steps (the paper's 300 of 1000)", metavar="N"
    )
    max_seq_length: Annotated[Int | None, limits(ge=1)] = setting(
        None,
        "tokens per text in training; default the base model's length (512; a recipe's base.max_seq_length)",
        metavar="N",
    )
    scale: Annotated[Number, limits(gt=0, note="the paper uses 50")] = setting(
        paper.INFONCE_SCALE, "InfoNCE inverse temperature on cosine similarity (paper: 50)", metavar="S"
    )
    seed: Seed = setting(paper.SEED, "seed of the LoRA init, data order and dropout (paper: 42)", metavar="S")
    bf16: Bool | None = setting(None, "bfloat16 mixed precision; default on where the CUDA GPU supports it")
    gradient_checkpointing: Bool | None = setting(
        None, "recompute activations in the backward pass; default on when training on a CUDA GPU"
    )
    lora_r: Annotated[Int, limits(ge=0, note="0 trains all weights; the paper uses 16")] = setting(
        16, "LoRA rank (paper: 16); 0 trains all weights", recipe="lora.r", metavar="R"
    )
    lora_alpha: Annotated[Int, limits(gt=0, note="the paper uses 32")] = setting(
        32,
        "LoRA scaling (paper: 32); on the command line 2 x --lora-r when only that is given",
        recipe="lora.alpha",
        metavar="A",
    )
    lora_dropout: Annotated[Number, limits(ge=0, lt=1, note="the paper uses 0.05")] = setting(
        0.05, "LoRA dropout (paper: 0.05)", recipe="lora.dropout", metavar="P"
    )
    lora_target_modules: tuple[Str, ...] = setting(
        help="projections to adapt; fused projections (Phi-3's qkv_proj) stand in for split ones",
        factory=lambda: PAPER_LORA_TARGETS,
        recipe="lora.target_modules",
        flag="--lora-targets",
        metavar="NAME,...",
    )
    logging_steps: Annotated[Int, limits(ge=1)] = setting(10, "log the loss every N steps", metavar="N")
    save_steps: Annotated[Int, limits(ge=1)] = setting(
        100, "checkpoint every N steps (a resumed run continues from the last)", metavar="N"
    )
    save_total_limit: Annotated[Int | None, limits(ge=1)] = setting(
        2, "checkpoints kept, older ones deleted (None: all)", metavar="N"
    )
    cached_loss: Bool = setting(
        False, "GradCache loss (CachedMultipleNegativesRankingLoss): big batches in little memory"
    )
    cached_mini_batch_size: Annotated[Int, limits(ge=1)] = setting(
        32, "texts per forward pass with cached_loss", metavar="N"
    )
    gather_across_devices: Bool = setting(True, "share in-batch negatives across processes under DDP")
    lr_scheduler_type: Str = setting("linear", "learning-rate schedule (paper: linear)", metavar="NAME")
    weight_decay: Annotated[Number, limits(ge=0)] = setting(0.0, "AdamW weight decay (paper: 0)", metavar="W")
    distill_weight: Annotated[Number, limits(ge=0, note="0: off")] = setting(
        0.0,
        "above 0, the loss adds this times the distance of the student's embeddings to the teacher's, which "
        "the data carries in a label column (st_prune.training.distillation)",
    )
    distill_distance: Literal[DISTANCES] = setting(
        "cosine", "distance to the teacher's embeddings (with --recover distill, or a recipe's distill section)"
    )
    recover: Literal["distill"] | None = setting(
        None,
        "distill: recover the cut by self-distillation. The uncut model embeds the training texts once "
        "(cached in the run's work folder) and the cut learns those embeddings (distill_distance), plus the "
        "contrastive loss when the data has pairs; the data may then be unlabelled text (.txt, one text a line, or "
        "JSONL with a text column)",
    )
    training_arguments: dict[Str, Any] = setting(
        help='any other SentenceTransformerTrainingArguments field, e.g. {"gradient_accumulation_steps": 4}; '
        "these win over everything above",
        factory=dict,
        metavar="JSON",
    )

    def __post_init__(self) -> None:
        self.lora_target_modules = tuple(self.lora_target_modules)
        self.validate()

    @classmethod
    def help(cls, name: str) -> str:
        return _fields()[name].metadata["help"]

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """One-line errors naming the fix for values that cannot train: each field against its own range, then the
        checks across fields."""
        for name in _fields():
            problem = _field_problem(name, getattr(self, name))
            if problem:
                raise StPruneError(f"{name} must be {problem}, got {getattr(self, name)!r}")
        if self.lora_r and not self.lora_target_modules:
            raise StPruneError("lora_target_modules is empty; name the projections to adapt, e.g. q_proj,v_proj")
        if (self.distill_weight or self.recover) and self.cached_loss:
            raise StPruneError(
                "distillation shares the student's embeddings with the plain loss: set cached_loss=False"
            )

    @property
    def effective_distill_weight(self) -> float:
        """The weight of the distance to the teacher: ``distill_weight``, or 1 when ``recover`` is on without one."""
        return self.distill_weight or (1.0 if self.recover else 0.0)

    @property
    def effective_warmup_steps(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(0.3 * self.max_steps)

    def sequence_length(self, base: int = DEFAULT_MAX_SEQ_LENGTH) -> int:
        """Tokens per training text: ``max_seq_length``, else the base model's length (``base``)."""
        return self.max_seq_length or base

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora_target_modules"] = list(self.lora_target_modules)
        return data


@functools.cache
def _fields() -> dict[str, dataclasses.Field]:
    return {info.name: info for info in dataclasses.fields(TrainingConfig)}


@functools.cache
def _adapter(name: str) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(TrainingConfig.__annotations__[name])


def _field_problem(name: str, value: Any) -> str | None:
    """What ``value`` must be instead (the words of the field's range or type), or None when it may hold it."""
    from pydantic import ValidationError

    try:
        _adapter(name).validate_python(value)
    except ValidationError as error:
        kind = error.errors()[0]["type"]
        words = _range_words(name)
        if words and kind not in ("int_type", "float_type", "bool_type", "string_type"):
            # "an integer of at least 2": library users read the type too (TrainingConfig(batch_size=1.5) is caught)
            return f"an integer of {words}" if name in _INTEGERS and words.startswith("at least") else words
        return _type_words(name)
    return None


def _range_words(name: str) -> str | None:
    for extra in typing.get_args(TrainingConfig.__annotations__[name])[1:]:
        words = (getattr(extra, "json_schema_extra", None) or {}).get("range")
        if words:
            return words
    return None


_INTEGERS = frozenset(name for name, hint in TrainingConfig.__annotations__.items() if unwrap(hint) is int)


def _type_words(name: str) -> str:
    hint = TrainingConfig.__annotations__[name]
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(unwrap(hint))
    if words is None:
        words = {
            "distill_distance": f"one of {', '.join(DISTANCES)}",
            "lora_target_modules": "a list of names",
            "training_arguments": "a mapping of SentenceTransformerTrainingArguments fields",
            "recover": "distill or None",
        }[name]
    default_is_none = _fields()[name].default is None
    return f"{words} or None" if default_is_none else words


# =====================================================================================================
# The recipe's `training:` section: the same settings, spelled the recipe's way
# =====================================================================================================
def _same(name: str) -> Any:
    """The type and range of ``TrainingConfig.<name>``, for the recipe key that stands for it."""
    return TrainingConfig.__annotations__[name]


def _default(name: str) -> Any:
    return _fields()[name].default


@spec
class LoraSpec:
    """``lora_r``, ``lora_alpha``, ``lora_dropout`` and ``lora_target_modules`` of ``TrainingConfig``."""

    r: _same("lora_r") = _default("lora_r")
    alpha: _same("lora_alpha") = _default("lora_alpha")
    dropout: _same("lora_dropout") = _default("lora_dropout")
    target_modules: list[Str] = field(default_factory=lambda: list(PAPER_LORA_TARGETS))  # a YAML list


@spec
class TrainingSpec:
    """The recipe's ``training:`` section: ``TrainingConfig``'s settings under the recipe's keys, with its types,
    ranges and defaults (``steps`` is ``max_steps``, ``lora.*`` are ``lora_*``). ``config()`` is the same settings as
    the ``TrainingConfig`` the trainer takes; the fields it does not list are library and command-line settings."""

    steps: _same("max_steps") = _default("max_steps")
    batch_size: _same("batch_size") = _default("batch_size")
    learning_rate: _same("learning_rate") = _default("learning_rate")
    warmup_steps: _same("warmup_steps") = _default("warmup_steps")
    scale: _same("scale") = _default("scale")
    seed: _same("seed") = _default("seed")
    max_seq_length: _same("max_seq_length") = _default("max_seq_length")  # None: base.max_seq_length
    bf16: _same("bf16") = _default("bf16")
    gradient_checkpointing: _same("gradient_checkpointing") = _default("gradient_checkpointing")
    lora: LoraSpec = field(default_factory=LoraSpec)
    logging_steps: _same("logging_steps") = _default("logging_steps")
    # A checkpoint (adapter, optimizer, scheduler, RNG, step) every N steps: a re-run resumes the stage from it.
    save_steps: _same("save_steps") = _default("save_steps")

    def config(self, **changes: Any) -> TrainingConfig:
        """These settings as a ``TrainingConfig`` (plus ``changes``, e.g. the distillation's weight)."""
        values = {}
        for name, recipe_key in recipe_keys().items():
            value: Any = self
            for part in recipe_key.split("."):
                value = getattr(value, part)
            values[name] = value
        return TrainingConfig(**{**values, **changes})

    def key_settings(self) -> dict[str, Any]:
        """The settings as they train on this machine, in the recipe's shape: what a stage key and the recipe digest
        hash and train.json records. Automatic values count as what they resolve to, so a recipe that leaves them
        out keys as one that spells out the same values (``warmup_steps: 300`` at 1000 steps; ``bf16: false`` and
        ``gradient_checkpointing: false`` on a machine without CUDA), and one that trains otherwise keys otherwise."""
        settings = dataclasses.asdict(self)
        if settings["warmup_steps"] is None:
            settings["warmup_steps"] = self.config().effective_warmup_steps
        if settings["bf16"] is None:
            settings["bf16"] = automatic_bf16()
        if settings["gradient_checkpointing"] is None:
            settings["gradient_checkpointing"] = automatic_gradient_checkpointing()
        return settings


def automatic_bf16() -> bool:
    """What ``bf16=None`` resolves to here: on where the CUDA GPU supports bfloat16."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def automatic_gradient_checkpointing() -> bool:
    """What ``gradient_checkpointing=None`` resolves to here: on when training on a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


@functools.cache
def recipe_keys() -> dict[str, str]:
    """``TrainingConfig`` field -> its dotted key in the recipe's ``training:`` section, for the fields a recipe sets."""
    keys = {}
    for name, info in _fields().items():
        key = info.metadata["recipe"] or name
        section, _, leaf = key.rpartition(".")
        owner = LoraSpec if section == "lora" else TrainingSpec
        if leaf in {f.name for f in dataclasses.fields(owner)}:
            keys[name] = key
    return keys
