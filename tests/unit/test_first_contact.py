"""What a new user meets first: a fast `--help`, shipped recipes by name, one-line errors for missing packages,
the run's output layout and its per-stage summary, README's CI-marked commands, recipes inside the wheel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from paths import ROOT

from st_prune import cli  # noqa: E402
from st_prune.errors import StPruneError  # noqa: E402
from st_prune.pipeline.recipe import load_recipe, shipped_recipes  # noqa: E402
from st_prune.util.optional import REQUIREMENTS, require  # noqa: E402


def test_public_names_still_import_lazily():
    import st_prune

    assert st_prune.TruncatedLLM.__name__ == "TruncatedLLM"
    assert callable(st_prune.encoder_from_llm) and callable(st_prune.export_model)
    with pytest.raises(AttributeError):
        st_prune.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------- shipped recipes
def test_recipes_verb_lists_every_shipped_recipe_with_base_layers_and_hardware(capsys):
    assert cli.main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(shipped_recipes()) >= 10
    by_name = {line.split()[0]: line for line in lines}
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in by_name["smollm2-135m-instruct-cpu"]
    assert "30 layers" in by_name["smollm2-135m-instruct-cpu"] and "CPU" in by_name["smollm2-135m-instruct-cpu"]
    assert "32 layers" in by_name["llama-3-8b-instruct"] and "GPU" in by_name["llama-3-8b-instruct"]


def test_a_shipped_recipe_is_found_by_name_with_or_without_yaml():
    by_name = load_recipe("smollm2-135m-instruct-cpu")
    assert by_name.name == "smollm2-135m-instruct-cpu"
    assert Path(by_name.source).parent == Path(shipped_recipes()[0]).parent
    assert load_recipe("gemma-3-270m-cpu.yaml").base.layers == 18


def test_an_unknown_recipe_name_lists_the_shipped_ones(capsys):
    assert cli.main(["run", "no-such-recipe", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "st-prune recipes" in err and "smollm2-135m-instruct-cpu" in err


def test_require_names_the_package_and_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        StPruneError, match=r'plotting needs the matplotlib package: run `pip install "matplotlib>=3.8"`'
    ):
        require("matplotlib", "plotting")


def test_any_missing_module_in_a_verb_is_one_line_and_status_2(monkeypatch, capsys):
    from st_prune.commands import submit

    def missing(args):
        raise ModuleNotFoundError("No module named 'mteb'", name="mteb")

    monkeypatch.setattr(submit, "run", missing)
    assert cli.main(["submit", "results", "--output", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'st-prune submit: error: the mteb package is missing: run `pip install "mteb>=2.26,<3"`'


def test_install_hints_match_the_declared_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | {
        req for extra in project["optional-dependencies"].values() for req in extra
    }
    for module in ("gguf", "matplotlib", "mteb"):
        assert REQUIREMENTS[module] in declared, (module, REQUIREMENTS[module])


def test_peak_memory_sees_an_allocation_made_inside_the_block():
    import mmap
    import time

    from st_prune.util.resources import current_rss_bytes, measure_usage

    # A fresh anonymous mapping: malloc could hand back already-resident heap pages that an earlier test
    # freed (then RSS would not move at all), a new mapping cannot.
    size, chunk = 200_000_000, b"x" * 1_000_000
    with measure_usage(interval=0.01) as usage:
        before = current_rss_bytes()
        block = mmap.mmap(-1, size)
        for _ in range(size // len(chunk)):
            block.write(chunk)
        time.sleep(0.1)
        block.close()
    assert before is not None
    assert usage.peak_rss_bytes - before > 150_000_000


# ----------------------------------------------------------------------------- README and CI agree
def test_ci_reads_both_commands_from_readme_and_they_install_torch_first():
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        from readme_command import readme_command
    finally:
        sys.path.pop(0)
    main_job, tests = readme_command("main-job"), readme_command("tests")
    for command in (main_job, tests):
        assert command.startswith("pip install torch==2.13.0 && ")
    assert "st-prune run smollm2-135m-instruct-cpu --output zoo" in main_job
    assert tests.endswith("python -m pytest -q -n 2 --dist loadfile")  # every tier, two processes
    ci = (ROOT / ".ci" / "run").read_text()
    assert "run_readme_command tests" in ci and "run_readme_command main-job" in ci
    assert "zoo/models" in ci
    with pytest.raises(SystemExit, match="exactly one command line"):
        readme_command("x", "<!-- ci:x -->\n```bash\na\nb\n```\n<!-- /ci:x -->")


def test_no_development_machine_path_in_the_project():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix in {".py", ".md", ".yaml", ".toml", ".j2", ""}
            and path.is_file()
            and "tests/unit/test_first_contact.py" != name
        ):
            text = path.read_text(errors="ignore")
            if re.search(r"(^|[\s\"'(=:])/work/", text, re.M):  # an absolute path of this machine, not DIR/work/
                offenders.append(name)
    assert offenders == []


# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "jinja2": "jinja2",
    "huggingface_hub": "huggingface-hub",
    "sentence_transformers": "sentence-transformers",
}


def test_every_package_st_prune_imports_is_declared():
    import ast
    import re as regex

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    declared = {regex.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
    undeclared = set()
    for path in (ROOT / "st_prune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            )
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "st_prune":
                    continue
                if DISTRIBUTIONS.get(top, top).lower().replace("_", "-") not in {d.replace("_", "-") for d in declared}:
                    undeclared.add(f"{top} ({path.relative_to(ROOT)})")
    assert not undeclared, sorted(undeclared)


def test_on_a_gpu_each_stage_records_its_own_cuda_peak(monkeypatch):
    from st_prune.util import resources

    class FakeCuda:
        def __init__(self):
            self.peak, self.emptied = 0, 0

        def reset_peak_memory_stats(self):
            self.peak = 0

        def max_memory_allocated(self):
            return self.peak

        def empty_cache(self):
            self.emptied += 1

    cuda = FakeCuda()
    monkeypatch.setattr(resources, "_cuda", lambda: cuda)
    cuda.peak = 9_000_000_000  # an earlier stage's peak must not count
    with resources.measure_usage() as usage:
        cuda.peak = 2_000_000_000
    assert usage.peak_gpu_gb == 2.0
    resources.release_memory()
    assert cuda.emptied == 1
