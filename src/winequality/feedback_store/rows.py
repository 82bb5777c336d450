"""What the feedback store holds and refuses, without the database layer (cheap to import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from winequality.contract import schema
from winequality.contract.features import Matrix
from winequality.contract.parsers import NUMBER_TYPES, wine_problems
from winequality.contract.problems import Problem, in_order


class StoreError(OSError):
    """The store cannot be reached, read or written right now; the message says which store and
    why (never its password). An ``OSError``: to its callers a database that is down is an I/O
    failure like an unwritable file, answered 503 and retried, never a 500."""


class ServedRequest(NamedTuple):
    """What the app answered for one request: the model matrix of its rows, the scores and the
    model version (None when unknown)."""

    rows: Matrix
    quality: npt.NDArray[np.float32] | None
    model_version: str | None


def validate_labelled_rows(
    rows: Sequence[Mapping[str, Any]], qualities: Sequence[Any]
) -> list[Problem]:
    """Problems with feature rows (the contract's wine records) and their true qualities."""
    if len(rows) != len(qualities):
        return [
            Problem(
                None,
                schema.TARGET,
                f"{len(qualities)} labels for {len(rows)} rows",
                "length_mismatch",
                ("body", schema.TARGET),
            )
        ]
    problems = wine_problems(list(rows))
    span = f"[{schema.QUALITY_MIN}, {schema.QUALITY_MAX}]"
    for i, q in enumerate(qualities):
        loc = ("body", schema.TARGET, i)
        if type(q) not in NUMBER_TYPES or (type(q) is float and not q.is_integer()):
            problems.append(
                Problem(i, schema.TARGET, f"must be an integer, got {q!r}", "int_type", loc)
            )
        elif not schema.QUALITY_MIN <= q <= schema.QUALITY_MAX:
            problems.append(Problem(i, schema.TARGET, f"{q} is outside {span}", "value_error", loc))
    return in_order(problems)
