"""``python -m winequality.serving``: the ``serve`` command without the rest of the CLI.

The container entry point: it skips importing the other stages' command modules at start.
"""

from __future__ import annotations

import typer

from winequality.serving.cli import serve

if __name__ == "__main__":
    typer.run(serve)
