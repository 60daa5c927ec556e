"""The table ``st-prune run`` ends with: wall time and peak memory of every stage (README's figures come from it)."""

from __future__ import annotations

from typing import Any


def usage_table(rows: list[dict[str, Any]], total_seconds: float, peak_gb: float, machine: str) -> str:
    """``rows``: one per stage run or skipped (``stage``, ``seconds``, ``peak_rss_gb``, optional ``peak_gpu_gb`` and
    ``earlier``); ``peak_gb`` is the whole process's peak resident memory."""

    def cell(value: float | None, unit: str) -> str:
        return (
            f"{value:.2f} GB" if unit == "GB" and value is not None else (f"{value:.1f}s" if value is not None else "-")
        )

    # On a GPU the table adds torch.cuda.max_memory_allocated per stage beside the process's RSS.
    gpu = any("peak_gpu_gb" in row for row in rows)
    lines = [f"{'stage':<18}{'wall':>10}{'peak memory':>14}" + (f"{'peak GPU':>12}" if gpu else "")]
    for row in rows:
        note = "  (done earlier)" if row.get("earlier") else ""
        gpu_cell = f"{cell(row.get('peak_gpu_gb'), 'GB'):>12}" if gpu else ""
        lines.append(
            f"{row['stage']:<18}{cell(row['seconds'], 's'):>10}{cell(row['peak_rss_gb'], 'GB'):>14}{gpu_cell}{note}"
        )
    lines.append(f"{'total':<18}{total_seconds:>9.1f}s{peak_gb:>11.2f} GB  (this process; {machine})")
    return "\n".join(lines)
