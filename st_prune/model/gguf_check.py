"""Is a GGUF file complete? A header walk that finds truncated downloads before transformers' minute-long load.

transformers parses a GGUF file with numpy views over the whole file; on a file cut short it fails deep inside
with ``struct.error`` or a reshape ``ValueError`` that reads like an unsupported quantization. This module reads
only the header (metadata and tensor table, a few MB even for large models) and compares the end of the last
tensor with the file size, so a damaged file gets one line: download it again.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from st_prune.errors import StPruneError

# GGUF metadata value types -> struct format of a scalar (8 = string, 9 = array are handled apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class _Truncated(Exception):
    """The header ends before its own description of itself does."""


class _Unknown(Exception):
    """A metadata type this walk does not know (a newer GGUF version): leave the judgement to transformers."""


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos = blob, 0

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.blob):
            raise _Truncated
        values = struct.unpack_from("<" + fmt, self.blob, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.blob):
            raise _Truncated
        self.pos += size

    def string(self) -> bytes:
        length = self.unpack("Q")
        start = self.pos
        self.skip(length)
        return self.blob[start : self.pos]

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.unpack("I"), self.unpack("Q")
            if item_kind in _SCALARS:  # skipped in one step: token score and type arrays are long
                self.skip(count * struct.calcsize("<" + _SCALARS[item_kind]))
            else:
                for _ in range(count):
                    self.value(item_kind)
            return None
        raise _Unknown(kind)


def check_gguf_complete(path: str | os.PathLike, *, header_bytes: int = 64 << 20) -> None:
    """Raise ``StPruneError`` (download it again) when the GGUF file at ``path`` is shorter than its header says.

    Unknown tensor types and header layouts this walk does not understand are left to transformers to judge.
    """
    path = Path(path)
    size = path.stat().st_size
    damaged = f"{path} is damaged or incomplete"
    with path.open("rb") as handle:
        blob = handle.read(min(size, header_bytes))
    reader = _Reader(blob)
    try:
        if reader.unpack("4s") != b"GGUF":
            raise StPruneError(f"{path} is not a GGUF file (no GGUF signature at its start); download it again")
        version = reader.unpack("I")
        count = "I" if version == 1 else "Q"
        tensor_count, kv_count = reader.unpack(count), reader.unpack(count)
        alignment = _DEFAULT_ALIGNMENT
        for _ in range(kv_count):
            key = reader.string()
            value = reader.value(reader.unpack("I"))
            if key == b"general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        tensors = []
        for _ in range(tensor_count):
            reader.string()
            dims = [reader.unpack("Q") for _ in range(reader.unpack("I"))]
            kind, offset = reader.unpack("I"), reader.unpack("Q")
            tensors.append((dims, kind, offset))
    except _Truncated:
        if size <= len(blob):  # the whole file was read and it still ended inside the header
            raise StPruneError(f"{damaged} ({size:,} bytes, ending inside its header); download it again") from None
        return  # a header larger than header_bytes: not judged here
    except _Unknown:
        return
    data_start = -(-reader.pos // alignment) * alignment
    expected = data_start + max((_tensor_end(dims, kind, offset) for dims, kind, offset in tensors), default=0)
    if expected > size:
        raise StPruneError(
            f"{damaged} ({size:,} of {expected:,} bytes: its tensors run past the end of the file); download it again"
        )


def _tensor_end(dims: list[int], kind: int, offset: int) -> int:
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ImportError, KeyError, ValueError):
        return offset  # an unknown type: at least its start must lie inside the file
    elements = 1
    for dim in dims:
        elements *= dim
    return offset + elements // block_size * type_size
