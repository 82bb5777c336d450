"""The app's refusals: an HTTP status and the contract's problems, as the API's error body.

Every 4xx/5xx answer of the prediction and feedback endpoints has the shape
``serving/schemas.py`` ``ErrorResponse`` documents: ``{"error": summary, "detail": [...]}``, each
problem ``{"loc", "index", "field", "msg", "type"}`` built from a ``contract.problems.Problem``.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from winequality.contract.problems import FeatureError, Problem

MAX_REPORTED: Final = 100
"""Problems listed in one error body; a 10,000-row garbage request must not echo 120,000 lines."""
SHOWN: Final = 5
"""Problems spelled out in the summary."""


def problem_json(p: Problem) -> dict[str, Any]:
    """A problem as the API answers it (``schemas.ProblemDetail``)."""
    return {"loc": list(p.loc), "index": p.row, "field": p.field, "msg": p.reason, "type": p.kind}


class RequestError(Exception):
    """A request the API refuses; ``status`` is the HTTP status (4xx) to answer with."""

    def __init__(
        self,
        status: int,
        problems: list[Problem],
        summary: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.status = status
        self.problems = problems
        self.kind = kind or (problems[0].kind if problems else "invalid")
        if summary is None:
            shown = "; ".join(_describe(p) for p in problems[:SHOWN])
            more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
            summary = f"{len(problems)} problem(s): {shown}{more}"
        self.summary = summary
        super().__init__(summary)

    @classmethod
    def invalid(cls, exc: FeatureError) -> RequestError:
        """The 422 of input the contract refused."""
        return cls(422, exc.problems)

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": self.summary,
                "detail": [problem_json(p) for p in self.problems[:MAX_REPORTED]],
            }
        )


def _describe(p: Problem) -> str:
    where = ".".join(str(x) for x in p.loc[1:]) or "body"
    return f"{where}: {p.reason}"


def error_body(summary: str, kind: str) -> bytes:
    """The body of a refusal of the request as a whole (no problem list of its own)."""
    return RequestError(0, [Problem(None, None, summary, kind, ("body",))], summary).body()
