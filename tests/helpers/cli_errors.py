"""Run `st-prune` in-process and check its one-line error (shared by the cli_errors tests of every tier)."""

from __future__ import annotations

from st_prune import cli


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of ``st-prune ARGV``; an exception escaping ``main`` fails the test as a traceback."""
    capsys.readouterr()
    status = cli.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    # Progress bars (loading weights, ...) share stderr; st-prune's own lines are what the user must read.
    return status, "\n".join(line for line in err.replace("\r", "\n").splitlines() if line.startswith("st-prune "))


def assert_one_line(status: int, err: str, *phrases: str) -> None:
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    for phrase in phrases:
        assert phrase in err, err
