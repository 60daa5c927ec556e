"""`st-prune recipes`: the recipes shipped with st-prune, one line each (name, base model, layers, hardware)."""

from __future__ import annotations

import argparse

from st_prune.pipeline.recipe import load_recipe, shipped_recipes
from st_prune.util.interrupts import same_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recipes",
        help="list the shipped recipes (run one with `st-prune run NAME`)",
        description="List the recipes shipped with st-prune: name, base model, decoder layers, what hardware it is "
        "sized for. `st-prune run NAME` runs one; `st-prune run NAME --dry-run` shows its settings.",
    )
    parser.set_defaults(func=run, interrupted=same_command)


def recipe_lines() -> list[str]:
    recipes = [load_recipe(path) for path in shipped_recipes()]
    width_name = max(len(recipe.name) for recipe in recipes)
    width_base = max(len(recipe.base_id) for recipe in recipes)
    lines = []
    for recipe in recipes:
        layers = f"{recipe.base.layers} layers" if recipe.base.layers else "layers: see config"
        lines.append(
            f"{recipe.name:<{width_name}}  {recipe.base_id:<{width_base}}  {layers:<10}  {recipe.hardware or '-'}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    print("\n".join(recipe_lines()))
    return 0
