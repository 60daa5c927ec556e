"""st_prune has no import cycles, and the runner's stages and the card renderer do not import the runner.

The graph is read from the source with ``ast`` (nothing is imported): every ``import``/``from ... import`` at module
level or inside a function counts, since a function-level import still ties the two modules together; imports under
``if TYPE_CHECKING:`` never run, so they are left out of the cycle check, but the card and stage modules must not
name ``st_prune.pipeline.runner`` even there (they take plain inputs, not the runner).
"""

from __future__ import annotations

import ast
from pathlib import Path

import st_prune

PACKAGE = Path(st_prune.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path, *, type_checking: bool) -> set[str]:
    """Dotted names ``path`` imports (``from a import b`` gives ``a`` and ``a.b``, so submodules count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[int] = set()
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {
        name: {target for target in imported_names(path, type_checking=False) if target in modules and target != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_function_level_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_st_prune_has_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], f"modules that import each other (directly or through others): {found}"


def test_card_and_stages_do_not_import_the_runner():
    modules = package_modules()
    readers = [
        name for name in modules if name == "st_prune.card.render" or name.startswith("st_prune.pipeline.stages.")
    ]
    offenders = {
        name: sorted(
            target
            for target in imported_names(modules[name], type_checking=True)
            if target == "st_prune.pipeline.runner" or target.startswith("st_prune.pipeline.runner.")
        )
        for name in readers
    }
    assert {name: found for name, found in offenders.items() if found} == {}


# The layers, bottom to top: a package imports only its own modules and those of lower layers (README "Layout").
LAYERS = (
    ("st_prune.errors", "st_prune.paper", "st_prune.prompt_format"),
    ("st_prune.util",),
    ("st_prune.model", "st_prune.data"),
    (
        "st_prune.l3prune",
        "st_prune.training",
        "st_prune.evaluation",
        "st_prune.trim",
        "st_prune.deploy",
        "st_prune.hub",
    ),
    ("st_prune.card",),
    ("st_prune.pipeline",),
    ("st_prune.commands",),
    ("st_prune.cli", "st_prune"),
)


def layer_of(module: str) -> tuple[int, str]:
    """(layer, package) of a module: the longest package prefix listed in LAYERS."""
    best = None
    for level, packages in enumerate(LAYERS):
        for package in packages:
            if (module == package or module.startswith(package + ".")) and (
                best is None or len(package) > len(best[1])
            ):
                best = (level, package)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        level, package = layer_of(module)
        for target in sorted(targets):
            target_level, target_package = layer_of(target)
            if target_package != package and target_level >= level:
                found.append(f"{module} -> {target}")
    return found


def test_layering_check_sees_an_upward_import():
    assert layering_violations({"st_prune.util.files": {"st_prune.pipeline.runner"}, "st_prune.pipeline.runner": set()})
    assert layering_violations({"st_prune.training.trainer": {"st_prune.deploy.onnx"}, "st_prune.deploy.onnx": set()})
    assert not layering_violations({"st_prune.pipeline.runner": {"st_prune.util.files"}, "st_prune.util.files": set()})


def test_every_package_imports_only_lower_layers():
    graph = {name: targets for name, targets in import_graph().items()}
    assert layering_violations(graph) == []
