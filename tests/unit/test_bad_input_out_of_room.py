"""A full disk, a quota or a file-size limit is recognised in each library's way of saying it."""

from __future__ import annotations

import errno


def test_out_of_room_knows_each_librarys_way_of_saying_it():
    from safetensors import SafetensorError

    from st_prune.errors import out_of_room

    assert out_of_room(OSError(errno.EDQUOT, "Disk quota exceeded"))[0] == "the disk quota is exceeded"
    assert out_of_room(SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert out_of_room(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"))
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.EFBIG, "File too large")
    assert out_of_room(wrapped)[0] == "a file exceeds the file-size limit"
    assert out_of_room(OSError(errno.EACCES, "Permission denied")) is None
    assert out_of_room(ValueError("os error")) is None
