"""A recipe key given twice is refused with the key and both lines (issue 23, case 10): YAML keeps the last value
silently, and a second `training:` block had replaced the first (steps 6 -> 1000)."""

from __future__ import annotations

import pytest

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.pipeline.recipe import load_recipe

RECIPE = """\
name: tiny
base: {model: tiny-model, id: org/tiny}
variants:
  - name: small
    layers: 2
training:
  steps: 6
  batch_size: 4
data: {path: triplets.jsonl}
card: {license: apache-2.0}
"""


def write(tmp_path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (RECIPE + "training:\n  steps: 1000\n", "key 'training' appears twice (lines 6 and 11); keep one"),
        (
            RECIPE.replace("  batch_size: 4\n", "  batch_size: 4\n  steps: 1000\n"),
            "key 'steps' appears twice in training (lines 7 and 9); keep one",
        ),
        (
            RECIPE.replace("    layers: 2\n", "    layers: 2\n    name: large\n"),
            "key 'name' appears twice in variants.0 (lines 4 and 6); keep one",
        ),
        (
            RECIPE.replace("{path: triplets.jsonl}", "{path: triplets.jsonl, path: other.jsonl}"),
            "key 'path' appears twice in data (lines 9 and 9); keep one",
        ),
    ],
    ids=["top-level", "nested", "in-a-list", "flow-mapping"],
)
def test_a_duplicate_key_is_refused_with_both_lines(text, message, tmp_path):
    path = write(tmp_path, text)
    with pytest.raises(StPruneError) as error:
        load_recipe(path)
    assert str(error.value) == f"recipe {path}: {message}"


def test_the_cli_refuses_it_in_one_line(tmp_path, capsys):
    path = write(tmp_path, RECIPE + "training:\n  steps: 1000\n")
    assert cli.main(["run", str(path), "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"st-prune run: error: recipe {path}: key 'training' appears twice (lines 6 and 11); keep one\n"
    )


def test_a_merge_may_be_overridden_but_not_given_a_key_twice(tmp_path):
    """`<<: *anchor` then a key of the merged mapping is YAML's way to override a default, not a duplicate; the
    same key twice beside the merge still is one."""

    def variants(large: str) -> str:
        return RECIPE.replace(
            "  - name: small\n    layers: 2\n", f"  - &small {{name: small, layers: 2}}\n  - {large}\n"
        )

    recipe = load_recipe(write(tmp_path, variants("{<<: *small, name: large, layers: 3}")))
    assert [(variant.name, variant.layers) for variant in recipe.variants] == [("small", 2), ("large", 3)]
    path = write(tmp_path, variants("{<<: *small, name: large, layers: 3, layers: 4}"))
    with pytest.raises(StPruneError) as error:
        load_recipe(path)
    assert str(error.value) == f"recipe {path}: key 'layers' appears twice in variants.1 (lines 5 and 5); keep one"


def test_a_duplicate_key_in_a_set_value_is_refused(tmp_path):
    path = write(tmp_path, RECIPE)
    with pytest.raises(StPruneError) as error:
        load_recipe(path, ["variants=[{name: a, layers: 2, name: b}]"])
    assert str(error.value) == "--set variants: 'name' appears twice in '[{name: a, layers: 2, name: b}]'; keep one"
