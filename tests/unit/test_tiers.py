"""The tiers hold: a unit test that builds a model or starts a Python process fails, and every test carries the
marker of its folder (tests/helpers/tiers.py, tests/conftest.py, tests/unit/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiers import TESTS, TIERS, TierViolation, collection_problem, tier_of


def test_a_unit_test_that_builds_a_model_fails():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=16,
    )
    with pytest.raises(TierViolation, match="built a LlamaForCausalLM: move it to tests/integration"):
        LlamaForCausalLM(config)


def test_a_unit_test_that_starts_a_python_process_fails():
    with pytest.raises(TierViolation, match="move it to tests/e2e"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(TierViolation, match="move it to tests/e2e"):
        subprocess.run(["torchrun", "--help"], check=True)
    assert subprocess.run(["git", "--version"], capture_output=True, check=True).stdout.startswith(b"git version")


def test_model_fixtures_and_the_real_llm_are_refused_outside_their_tiers():
    unit, integration, e2e = (TESTS / tier / "test_example.py" for tier in ("unit", "integration", "e2e"))
    assert "asks for tiny_llm, which builds a model: move it to tests/integration" in collection_problem(
        unit, ["tmp_path", "tiny_llm"], set()
    )
    assert "move it to tests/integration" in collection_problem(unit, ["tiny_model"], set())
    assert collection_problem(integration, ["tiny_llm", "tiny_model"], set()) is None
    assert "uses the real LLM (real_llm): move it to tests/e2e" in collection_problem(
        integration, ["smollm2_gguf"], {"real_llm"}
    )
    assert collection_problem(e2e, ["smollm2_gguf"], {"real_llm"}) is None
    assert "outside the tiers" in collection_problem(TESTS / "test_example.py", [], set())


def test_every_collected_test_carries_the_marker_of_its_folder(request):
    for item in request.session.items:
        assert [mark.name for mark in item.iter_markers() if mark.name in TIERS] == [tier_of(item.path)], item.nodeid


def test_test_file_names_are_unique_across_tiers():
    """The tier folders are not packages, so pytest imports each test file by its bare name: two files of one name
    in two tiers fail collection ("import file mismatch") when both are collected."""
    names = [path.name for path in TESTS.glob("*/test_*.py")]
    assert len(names) > 50 and sorted({name for name in names if names.count(name) > 1}) == []
