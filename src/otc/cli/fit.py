"""Tables that fit the terminal without cutting a number.

A table is described as columns, each with a priority. While the table is wider than the terminal, the
least important column gives way: a text column that may be abbreviated (a name) is cut with an
ellipsis down to its shortest useful width; any other column is dropped whole. Columns without a
priority (prices, amounts) are never touched: if even they do not fit, the table is wider than the
terminal and the terminal wraps it, but no digit is ever lost.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box
from rich.table import Table
from rich.text import Text

BOX = box.MINIMAL  # column rules, so tables stay readable (and parseable) without colour
Cell = Text | str


@dataclass
class Column:
    header: str
    cells: Sequence[Cell]
    justify: Literal["left", "right"] = "left"
    priority: int | None = None  # None: essential (never dropped or cut); lower gives way first
    shrink: int | None = None  # may be cut with an ellipsis down to this many characters (text only)
    style: str = ""
    compact: Sequence[Cell] | None = None  # shorter cells to use first when it must give way
    width: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.width = natural(self.header, self.cells)


def natural(header: str, cells: Sequence[Cell]) -> int:
    return max([cell_len(header), *(cell_len(c) for c in cells)])


def cell_len(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(cell).cell_len


def table_width(columns: Sequence[Column], edge: bool = True) -> int:
    """Width of a ``BOX`` table: one space of padding each side of every cell, one rule between cells,
    and with ``edge`` one edge character each side."""
    return sum(c.width for c in columns) + 3 * len(columns) + (1 if edge else -1) if columns else 0


def fit(columns: list[Column], width: int, edge: bool = True) -> list[Column]:
    """The columns to show in ``width`` characters, some shrunk (``Column.width``), least important
    first; the order of the rest is kept."""
    kept = list(columns)
    while table_width(kept, edge) > width:
        yielding = [c for c in kept if c.priority is not None]
        if not yielding:
            break
        least = min(yielding, key=lambda c: c.priority if c.priority is not None else 0)
        excess = table_width(kept, edge) - width
        if least.compact is not None:  # the short form first (a name without its id, ...)
            least.cells, least.compact = least.compact, None
            least.width = natural(least.header, least.cells)
            continue
        if least.shrink is not None and least.width > least.shrink:
            least.width = max(least.shrink, cell_len(least.header), least.width - excess)
            least.shrink = least.width  # shrunk as far as it goes: next time it is dropped
            continue
        kept.remove(least)
    return kept


def fitted_table(
    columns: list[Column],
    width: int,
    rows: int,
    *,
    sections: Collection[int] = (),
    styles: Sequence[str | None] = (),
    **options: Any,
) -> Table:
    """A rich ``Table`` of the columns that fit ``width``; ``rows`` is the number of rows (the cells of
    each column, in order), ``sections`` the rows a rule follows, ``styles`` each row's style. Further
    ``options`` go to ``Table`` (title, caption, show_edge, ...)."""
    kept = fit(columns, width, options.get("show_edge", True))
    options.setdefault("title_justify", "left")
    options.setdefault("caption_justify", "left")
    table = Table(box=BOX, **options)
    for c in kept:
        cut = c.width < natural(c.header, c.cells)
        table.add_column(
            c.header,
            justify=c.justify,
            no_wrap=True,
            style=c.style or None,
            min_width=c.width,
            max_width=c.width if cut else None,
            overflow="ellipsis",
        )
    for i in range(rows):
        table.add_row(*(c.cells[i] for c in kept), style=styles[i] if i < len(styles) else None)
        if i in sections:
            table.add_section()
    return table
