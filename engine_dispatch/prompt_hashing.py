"""Chained prefix-block hashes of a prompt, for hosts that see text or token ids.

Block i's hash is ``hash((hash of block i-1, block i's content))``, so equal hashes at position i
mean equal prompts up to the end of block i. Only full blocks are hashed (a partial tail is never
cached as a block by paged engines either). Python's ``hash`` of text is salted per process: the
hashes are meaningful only inside the process that computed them (one router, one DP controller).
"""

from __future__ import annotations

from collections.abc import Sequence

#: characters per token assumed when only text is available (English BPE averages about 4)
CHARS_PER_TOKEN = 4


def chained_block_hashes(units: str | Sequence[int], block: int) -> tuple[int, ...]:
    """Hashes of the full ``block``-sized blocks of ``units`` (text characters or token ids)."""
    if block < 1:
        raise ValueError(f"block: expected >= 1, got {block}")
    hashes = []
    previous = 0
    as_text = isinstance(units, str)
    for start in range(0, len(units) - block + 1, block):
        chunk = units[start:start + block]
        previous = hash((previous, chunk if as_text else tuple(chunk)))
        hashes.append(previous)
    return tuple(hashes)


def text_block_hashes(text: str, block_tokens: int) -> tuple[int, ...]:
    """Text without a tokenizer: blocks of ``block_tokens * CHARS_PER_TOKEN`` characters."""
    return chained_block_hashes(text, block_tokens * CHARS_PER_TOKEN)


def estimated_tokens(text: str) -> int:
    """Token count estimate of ``text`` without a tokenizer (at least 1)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))
