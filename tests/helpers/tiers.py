"""The three test tiers and the guard that keeps unit tests free of models and Python processes.

``tests/unit``: pure logic, schema, keys, messages; no model is built and no Python process started.
``tests/integration``: tiny random models in-process. ``tests/e2e``: CLI subprocesses, torchrun, kill/resume,
the real SmolLM2. tests/conftest.py marks each test with its folder's tier, so ``pytest -m "not e2e"`` is the
inner loop and ``pytest tests/unit`` the quickest check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from paths import TESTS

TIERS = ("unit", "integration", "e2e")
#: Fixtures that build a model (or hand out the real LLM): a unit test must not ask for them.
MODEL_FIXTURES = frozenset({"tiny_llm", "tiny_model", "smollm2_gguf"})


class TierViolation(AssertionError):
    """A test does what its tier does not allow (the message names the tier it belongs in)."""


def tier_of(path: str | os.PathLike) -> str | None:
    """The tier folder ``path`` lies in, or None outside tests/unit, tests/integration and tests/e2e."""
    parts = Path(path).resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def collection_problem(path, fixturenames, markers) -> str | None:
    """Why a collected test sits in the wrong place, or None: each test in a tier; the real LLM only in e2e;
    no model fixture in unit."""
    tier = tier_of(path)
    if tier is None:
        return "is outside the tiers: move it into tests/unit, tests/integration or tests/e2e (see tests/conftest.py)"
    if "real_llm" in markers and tier != "e2e":
        return "uses the real LLM (real_llm): move it to tests/e2e"
    if tier == "unit" and (used := sorted(MODEL_FIXTURES & set(fixturenames))):
        return f"is a unit test but asks for {', '.join(used)}, which builds a model: move it to tests/integration"
    return None


def _is_python_process(args) -> bool:
    program = args if isinstance(args, (str, bytes, os.PathLike)) else (args[0] if args else "")
    name = Path(os.fsdecode(program).split()[0] if program else "").name
    return Path(os.fsdecode(program)).resolve() == Path(sys.executable).resolve() or name.startswith(
        ("python", "torchrun", "st-prune", "pip")
    )


def forbid_models_and_python_processes(monkeypatch) -> None:
    """Make building a transformers model or starting a Python process (CLI, torchrun, pip) fail the test."""
    from transformers.modeling_utils import PreTrainedModel

    def refuse_model(self, *args, **kwargs):
        raise TierViolation(f"a unit test built a {type(self).__name__}: move it to tests/integration")

    popen_init = subprocess.Popen.__init__

    def refuse_python(self, args, *rest, **kwargs):
        if _is_python_process(args):
            raise TierViolation(f"a unit test started {args!r}: move it to tests/e2e")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "__init__", refuse_model)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse_python)
