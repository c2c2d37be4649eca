"""Strict field parsing shared by the trace loaders: every error names ``file:line`` and the field."""

from __future__ import annotations

import math


def parse_int(text: object, where: str, field: str, minimum: int) -> int:
    """Return ``text`` as an int ``>= minimum`` or raise ``ValueError("where: field F: expected ...")``.

    ``text`` may be a string (CSV) or a JSON value; JSON booleans and non-integral floats are refused.
    """
    expected = f"{where}: field {field}: expected an integer >= {minimum}, got {text!r}"
    if isinstance(text, bool):
        raise ValueError(expected)
    if isinstance(text, int):
        value = text
    elif isinstance(text, float) and text.is_integer():
        value = int(text)
    elif isinstance(text, str):
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(expected) from None
    else:
        raise ValueError(expected)
    if value < minimum:
        raise ValueError(expected)
    return value


def parse_float(value: object, where: str, field: str) -> float:
    """Return a finite, non-negative JSON number or raise a ``ValueError`` naming ``where`` and ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: field {field}: expected a finite number >= 0, got {value!r}")
    return float(value)
