"""What a new user meets in other processes and on the real SmolLM2: a `--help` that imports nothing heavy,
the recipes inside the wheel, a GGUF without the gguf package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from paths import ROOT

from st_prune import cli
from st_prune.pipeline.recipe import load_recipe, shipped_recipes

HEAVY = ("torch", "sentence_transformers", "transformers", "mteb", "datasets", "peft")


# ------------------------------------------------------------------------------------------- fast --help
def test_help_and_recipe_listing_import_no_heavy_library():
    code = (
        "import sys, contextlib, io\n"
        "from st_prune import cli\n"
        "for argv in (['--help'], ['run', '--help'], ['recipes']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        cli.main(argv)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_shipped_recipe_layers_match_what_their_cpu_bases_say(smollm2_gguf):
    from st_prune.model import architectures
    from st_prune.model.truncated_llm import load_base_config

    config = load_base_config(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    assert architectures.num_layers(config) == load_recipe("smollm2-135m-instruct-cpu").base.layers


def test_the_wheel_carries_the_recipes_and_their_data(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("st_prune-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in shipped_recipes():
        assert f"st_prune/recipes/{recipe.name}" in names
    assert "st_prune/recipes/data/triplets-small.jsonl" in names
    assert "st_prune/recipes/README.md" in names


# --------------------------------------------------------------------------------- missing dependencies
def test_a_gguf_without_the_gguf_package_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys, smollm2_gguf):
    monkeypatch.setitem(sys.modules, "gguf", None)  # what an environment without gguf looks like to import
    monkeypatch.setenv("ST_PRUNE_CACHE", str(tmp_path / "cache"))  # not yet dequantized: the GGUF must be read
    assert cli.main(["prune", str(smollm2_gguf), "--layers", "1", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "needs the gguf package" in err and 'pip install "gguf>=0.10"' in err
    assert not (tmp_path / "out").exists()
