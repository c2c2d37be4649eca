"""Factory for the stand-in's placeholder ops (test support only; see ../README.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


def unavailable_op(qualified_name: str) -> Callable[..., NoReturn]:
    """Return a function named after ``qualified_name`` that raises ``NotImplementedError`` when called."""

    def op(*args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError(
            f"{qualified_name} was called, but this is the CPU test stand-in for sgl_kernel "
            "(tests/support/sgl_kernel_cpu_standin): it has no kernels. This SGLang code path needs "
            "the real sgl_kernel."
        )

    op.__name__ = op.__qualname__ = qualified_name.rsplit(".", 1)[-1]
    return op
