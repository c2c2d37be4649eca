"""Reading a JSON file with an error that names the file, the line and what was expected."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str | os.PathLike[str], expected: str) -> Any:
    """The parsed JSON document at ``path``.

    Raises ValueError ``"<path>:<line>: expected <expected> (<parser message>)"`` when the file is
    not JSON, OSError when it cannot be read.
    """
    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}:{exc.lineno}: expected {expected} ({exc.msg})") from None
