"""The one report of refused input, shared by every component: which row, which field, why.

The app's 422 bodies, the drift detector's refusals, the feedback store, data validation and the
Triton ``preprocess`` step all speak in ``Problem``s. Standard library only: the Triton copy of the
contract imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

Loc = tuple[str | int, ...]

SHOWN: Final = 10
"""Problems spelled out in a ``FeatureError`` message; the others are counted."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One refused value (or a refused input as a whole, when ``row`` and ``field`` are None)."""

    row: int | None
    """0-based index of the offending wine, tensor element or table row; None: not one row."""
    field: str | None
    """Offending field, tensor or column name; None: the row or the input as a whole."""
    reason: str
    """Why, for a person: e.g. ``15.0 is outside the physical range [0.0, 14.0] pH``."""
    kind: str = "value_error"
    """Why, for a program (the API's ``type``): ``missing``, ``number_type``, ``json_invalid``..."""
    loc: Loc = ()
    """Where in the input, when (row, field) is not enough to find it: the API's
    ``["body", "wines", 3, "alcohol"]``, a CSV cell's ``(file, line)``."""
    value: str | None = None
    """The offending value as text, where the reporter keeps it (data validation does)."""

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"row {self.row}" if self.row is not None else "",
                self.field or "",
            )
            if part
        )
        return f"{where}: {self.reason}" if where else self.reason


def sort_key(problem: Problem) -> tuple[int, str, str]:
    """Input order: problems of the input as a whole first, then row by row."""
    return (-1 if problem.row is None else problem.row, str(problem.loc), problem.field or "")


def in_order(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=sort_key)


class FeatureError(ValueError):
    """Input that breaks the contract; ``problems`` names every refused value."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:SHOWN])
        more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        super().__init__(f"{len(problems)} invalid value(s): {shown}{more}")
