"""--overwrite never deletes what st-prune did not write (st_prune.util.ownership); symlinked destinations are followed, the
link kept."""

from __future__ import annotations

import json
import os

import pytest
from user_files import _snapshot, _user_files

from st_prune import encoder_from_llm, export_model
from st_prune.cli import main as cli_main
from st_prune.errors import StPruneError
from st_prune.util import ownership


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
