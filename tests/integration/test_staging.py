"""Exports are staged beside their destination: a killed export's leftovers are removed by the next export to the
same destination (only those), and final files and folders get the umask's modes, not mkdtemp's/mkstemp's."""

from __future__ import annotations

import os
import stat

import pytest

from st_prune import encoder_from_llm, export_model
from st_prune.util.files import write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_exports_and_written_files_get_the_umask_modes(tiny_llm, tmp_path, umask, mask, folder_mode, file_mode):
    umask(mask)
    model = encoder_from_llm(str(tiny_llm("llama", layers=2)), layers=1)
    output = export_model(model, tmp_path / "encoder", extra_files={"scan/l3prune.json": "{}"})
    modes = {
        str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode) for path in [output, *output.rglob("*")]
    }
    assert modes["encoder"] == folder_mode
    expected = {name: folder_mode if (tmp_path / name).is_dir() else file_mode for name in modes}
    assert modes == expected

    write_json_atomic(tmp_path / "models" / "zoo.json", [])
    write_text_atomic(tmp_path / "models" / "README.md", "# zoo\n")
    assert stat.S_IMODE((tmp_path / "models" / "zoo.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "models" / "README.md").stat().st_mode) == file_mode
