"""Print the shell command README.md holds between `<!-- ci:NAME -->` and `<!-- /ci:NAME -->`.

CI runs exactly these commands, so README and CI cannot drift apart: change the command in README and CI runs
the new one. The marked block must hold one fenced code block with one command line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_command(name: str, text: str | None = None) -> str:
    text = README.read_text(encoding="utf-8") if text is None else text
    match = re.search(
        rf"<!-- ci:{re.escape(name)} -->\s*```(?:bash|sh)?\n(.*?)\n```\s*<!-- /ci:{re.escape(name)} -->", text, re.S
    )
    if match is None:
        raise SystemExit(f"README.md has no <!-- ci:{name} --> ... <!-- /ci:{name} --> block around one ```bash block")
    lines = [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise SystemExit(f"README.md's ci:{name} block must hold exactly one command line, found {len(lines)}")
    return lines[0].strip()


if __name__ == "__main__":
    print(readme_command(sys.argv[1]))
