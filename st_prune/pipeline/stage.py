"""The stage contract: one object per stage of ``st-prune run``, defined in one file of ``st_prune.pipeline.stages``.

A stage owns

- its ``name`` (also ``--only NAME`` and its marker's file name, ``stages/<name>[.<variant>].json``);
- its ``key``: a short hash of the recipe settings it reads *and the key of the stage it builds on*, so a changed
  setting re-runs exactly the stages downstream of it (a new learning rate re-runs train .. card and keeps the scan;
  a new evaluation task re-runs evaluate and card only; a new scan size re-runs everything). Keys are pure functions
  of the recipe, the variant, its layer count and its folder name, so ``--dry-run`` knows what a changed recipe
  would redo before any work;
- its ``record``: the file it leaves for later stages and the card (``work/<variant>/<record>``);
- its body, ``run``, which returns what goes into the marker beside the key.

The runner asks ``applies`` (optional stages: trim, deploy, evaluate), calls ``check_inputs`` (a missing input is one
line naming the stage to run first, even when the stage itself is done), skips a stage whose marker holds the same
key, else runs it and writes the marker last.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from st_prune.pipeline.context import RunContext
    from st_prune.pipeline.schema import Recipe, VariantSpec


def digest(*parts: Any) -> str:
    """The 16-hex-digit key of ``parts`` (JSON, sorted keys): the form every stage key and shipped digest has."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stage:
    """One stage; subclasses set ``name`` and ``record`` and implement ``key`` and ``run``."""

    name: ClassVar[str]
    record: ClassVar[str | None] = None  # the file in work/<variant>/ later stages read (None: none, or not there)
    per_variant: ClassVar[bool] = True  # False: once per run (the scan)

    def applies(self, ctx: RunContext, variant: VariantSpec | None) -> bool:
        return True

    def check_inputs(self, ctx: RunContext, variant: VariantSpec | None) -> None:
        """Raise one line naming the stage to run first when an input is missing."""

    def key(self, recipe: Recipe, variant: VariantSpec | None, layers: int | None, folder: str | None) -> str:
        raise NotImplementedError

    def marker_key(self, ctx: RunContext, variant: VariantSpec | None, layers: int | None) -> Any:
        """What the marker holds: the key; None while it cannot be known (``layers`` None: a variant's depth comes
        from a scan that has to run again)."""
        if variant is None:
            return self.key(ctx.recipe, None, None, None)
        return None if layers is None else self.key(ctx.recipe, variant, layers, ctx.zoo_dir(variant).name)

    def describe(self, ctx: RunContext, variant: VariantSpec, extra: str = "") -> str:
        """The plan's words for this stage of ``variant`` (``--dry-run``): ``[name: how deep it is cut]``."""
        depth = variant.pick or (f"{variant.layers} layers" if variant.layers else f"fraction {variant.fraction}")
        return f"[{variant.name}: {depth}{extra}]"

    def run(self, ctx: RunContext, variant: VariantSpec | None) -> dict[str, Any]:
        """Do the work; returns what the marker records beside the key."""
        raise NotImplementedError

    def finish(self, ctx: RunContext, variant: VariantSpec | None, key: Any) -> None:
        """After the marker (every rank): clean what only mattered while the stage ran."""
