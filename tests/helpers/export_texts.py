"""Texts the export tests encode."""

from __future__ import annotations

TEXTS = ["A man is playing a guitar.", "Debian packages ship software.", "hello"]
