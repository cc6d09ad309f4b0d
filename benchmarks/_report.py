"""The Markdown result files' shared shape: a title, the command that made them, tables, notes.

Each script composes its report from these, so that every file under benchmarks/results/ names
the command that reproduces it the same way (``python -m benchmarks.<name> ARGS``).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def command(script: str, argv: Sequence[str] | None = None, prefix: str = "") -> str:
    """The command line that reproduces a run of ``benchmarks.<script>``.

    Args:
        script: The module's name inside the benchmarks package.
        argv: Its arguments; ``None``: this process's own (``sys.argv[1:]``).
        prefix: What the run was started under, e.g. ``"nice -n 10 "``.
    """
    args = sys.argv[1:] if argv is None else argv
    return f"{prefix}python -m benchmarks.{script}" + "".join(f" {shlex.quote(arg)}" for arg in args)


def table(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table's lines.

    Args:
        header: The column names.
        align: One letter per column: ``l`` left (text), ``r`` right (numbers).
        rows: The cells, already formatted or formatted by ``str``.
    """
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r}: give one of l or r per column ({len(header)})")
    separator = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return [_row(header), separator, *(_row(row) for row in rows)]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def document(title: str, command_line: str, *blocks: Sequence[str]) -> str:
    """The whole report: ``# title``, the command, then each block of lines, a blank line apart.

    Args:
        title: The heading, without ``#``.
        command_line: As :func:`command` gives it.
        blocks: Tables and paragraphs, each a list of lines.
    """
    lines = [f"# {title}", "", f"Command: `{command_line}`"]
    for block in blocks:
        lines += ["", *block]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """Write the report to ``path`` (creating its folder) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
