"""Small file helpers shared by the stage commands."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, data: object, *, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
