"""Running the ``moesched`` CLI in-process from the fidelity scripts."""

from __future__ import annotations

from experiments.cli import main as moesched


def run_moesched(argv: list[str]) -> None:
    """``moesched <argv>`` in this process; RuntimeError unless it exits 0 or 1 (1: targets missed)."""
    code = moesched(argv)
    if code not in (0, 1):
        raise RuntimeError(f"moesched {' '.join(argv[:1])} exited {code}")
