"""--overwrite refuses the current, home and root folders before anything loads."""

from __future__ import annotations

import pytest
from user_files import _snapshot, _user_files

from st_prune.cli import main as cli_main


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
