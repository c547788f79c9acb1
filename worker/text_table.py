"""Plain-text tables for the operator commands: aligned columns, numbers to the right."""

from __future__ import annotations

from collections.abc import Sequence

# None is a number that is not there (no stored offset, say), shown as "-".
Cell = str | int | None


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Columns as wide as their widest cell; numeric columns right-aligned so digits line up."""
    cells = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        bool(rows) and all(row[i] is None or isinstance(row[i], int) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])
