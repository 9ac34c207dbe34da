"""loadtests/RESULTS.md is shared by several benchmarks: each owns one marked block."""
from __future__ import annotations

from pathlib import Path


def replace_block(path: Path, name: str, body: str) -> None:
    """Put `body` between this benchmark's markers, keeping every other block as it was."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text() if path.exists() else "# Load test results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
