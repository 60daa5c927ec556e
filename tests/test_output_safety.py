"""--overwrite never deletes what st-prune did not write (st_prune.util.ownership); symlinked destinations are followed, the
link kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from st_prune import encoder_from_llm, export_model
from st_prune.cli import main as cli_main
from st_prune.errors import StPruneError
from st_prune.util import ownership


def _user_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "notes").mkdir(exist_ok=True)
    (folder / "notes" / "todo.txt").write_text("finish chapter 3")
    return _snapshot(folder)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("output", [".", "..", "sub/..", "HOME", "/"])
def test_cli_overwrite_refuses_the_current_home_and_root_folders_before_loading(tmp_path, monkeypatch, capsys, output):
    work = tmp_path / "mydir"
    expected = _user_files(work)
    home = tmp_path  # a parent of the current folder, like a real home folder is
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (work / "sub").mkdir()
    output = str(home) if output == "HOME" else output
    # A model path that does not exist: the refusal must come before any loading.
    assert cli_main(["prune", "no-such-model", "--layers", "2", "--output", output, "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "the export replaces its whole destination; name a new folder such as" in error
    (work / "sub").rmdir()
    assert _snapshot(work) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mydir"]  # no staging folder either


def test_overwrite_refuses_a_folder_that_is_not_a_model(tiny_llm, tmp_path, capsys):
    mine = tmp_path / "mine"
    expected = _user_files(mine)
    assert cli_main(["prune", "no-such-model", "--layers", "2", "--output", str(mine), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "holds no export st-prune wrote" in error and "choose another --output" in error

    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    with pytest.raises(StPruneError, match="holds no export st-prune wrote"):
        export_model(model, mine, overwrite=True)
    assert _snapshot(mine) == expected
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]


def test_overwrite_replaces_an_earlier_export_and_follows_a_symlinked_destination(tiny_llm, tmp_path):
    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    real = tmp_path / "disk" / "encoder"
    export_model(model, real)
    (real / "stale.bin").write_text("from the earlier export")
    ownership.record(real, ["stale.bin"], by="export")  # st-prune's own file, not written again
    (real / "mine.txt").write_text("the user's")
    link = tmp_path / "encoder"
    link.symlink_to(real, target_is_directory=True)

    assert export_model(model, link, overwrite=True) == link
    assert link.is_symlink() and link.resolve() == real.resolve()  # the link is kept and points to the new export
    assert not (real / "stale.bin").exists()  # st-prune's stale file goes, the user's stays
    assert (real / "mine.txt").read_text() == "the user's"
    assert json.loads((real / "modules.json").read_text())[0]["type"] == "sentence_transformers.models.Transformer"
    assert sorted(path.name for path in real.parent.iterdir()) == ["encoder"]  # staging sat beside the real folder

    # A link to the user's own files is refused like the folder itself.
    mine = tmp_path / "mine"
    expected = _user_files(mine)
    link_to_mine = tmp_path / "to-mine"
    link_to_mine.symlink_to(mine, target_is_directory=True)
    with pytest.raises(StPruneError, match="holds no export st-prune wrote"):
        export_model(model, link_to_mine, overwrite=True)
    assert _snapshot(mine) == expected and link_to_mine.is_symlink()

    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(StPruneError, match="cannot resolve"):
        export_model(model, loop, overwrite=True)
