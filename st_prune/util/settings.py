"""The building blocks of validated settings, shared by the recipe schema (``st_prune.pipeline.schema``) and the
training settings (``st_prune.training.config``): strict value types and ranges whose error words come from the same
numbers as the check.

``spec`` makes a pydantic dataclass that refuses unknown keys: a real dataclass (``dataclasses.asdict``/``replace``
work on it) validated when it is built.
"""

import types
import typing
from typing import Annotated, Any, Union

from pydantic import AllowInfNan, BeforeValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass as _pydantic_dataclass

# Unknown keys are errors (a typo must not silently fall back to the default). defer_build: pydantic builds a spec's
# validator when it is first used, not at import: every `st-prune` command imports the schema, few load a recipe.
spec = _pydantic_dataclass(config=ConfigDict(extra="forbid", defer_build=True))


def _yaml_number(value: Any) -> Any:
    # PyYAML reads `2e-4` (no dot: YAML 1.1) as a string, in a recipe file and in `--set training.learning_rate=1e-4`.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# Strict: a recipe's `steps: "7"`, `steps: 3.5` or `bf16: 1` is a mistake to report, not to coerce; numbers take
# integers (50 -> 50.0) and the numeric strings above, never true/false, NaN or infinity.
Int = Annotated[int, Strict()]
Number = Annotated[float, BeforeValidator(_yaml_number), Strict(), AllowInfNan(False)]
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]  # a required string that must not be empty

SEED_MAX = 2**32 - 1  # transformers' set_seed seeds numpy, which takes 0 .. 2**32 - 1


def limits(
    *,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    note: str = "",
) -> Any:
    """A value's range (pydantic constraints) and the words its error message uses, made from the same numbers."""
    if ge is not None and lt is not None:
        words = f"in [{ge}, {lt})"
    elif ge is not None and le is not None:
        words = f"in [{ge}, {le}]"
    elif gt is not None and le is not None:
        words = f"in ({gt}, {le}]"
    elif gt == 0:
        words = "a positive number"
    elif ge == 0:
        words = "0 or more"
    elif ge is not None:
        words = f"at least {ge}"
    else:  # pragma: no cover - every range above is one of these shapes
        raise TypeError("limits() needs ge, or gt=0")
    if note:
        words += f" ({note})"
    return Field(ge=ge, gt=gt, lt=lt, le=le, json_schema_extra={"range": words})


def unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) in (Union, types.UnionType):
            options = [option for option in typing.get_args(tp) if option is not type(None)]
            if len(options) != 1:
                return tp
            tp = options[0]
        else:
            return tp
