"""What every stage command shares: settings + params, one-line errors, a progress spinner.

Imports only the standard library, typer and the neutral modules (settings, params, stages), so
each command group can use it without importing another group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer

if TYPE_CHECKING:
    from winequality.params import Params
    from winequality.settings import ProjectSettings

S = TypeVar("S", bound="ProjectSettings")


def settings_and_params(kind: type[S]) -> tuple[S, Params]:
    """The settings of ``kind`` (environment) and ``params.yaml`` of the project directory."""
    from winequality.params import load_params

    settings = kind()
    return settings, load_params(settings.params_path())


def project_params() -> Params:
    """``params.yaml`` of the project directory (``WINEQ_PROJECT_DIR``, ``WINEQ_PARAMS_FILE``)."""
    from winequality.settings import ProjectSettings

    return settings_and_params(ProjectSettings)[1]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr; raise the returned exit (code 1)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


@contextmanager
def stage_errors() -> Iterator[None]:
    """Expected failures (bad input, missing files, a refused export) -> one line, exit 1."""
    from pydantic import ValidationError

    from winequality.stages import StageError

    try:
        yield
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, StageError) as exc:
        if isinstance(exc, ValidationError):
            raise fail(f"invalid parameters: {exc}") from exc
        raise fail(str(exc)) from exc


@contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner on stderr while a long step runs; the message as a line when stderr is not a
    terminal (a CI log or ``dvc repro`` still says what the command is waiting for)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        console.print(message, highlight=False, soft_wrap=True)
        yield
        return
    with console.status(message):
        yield
