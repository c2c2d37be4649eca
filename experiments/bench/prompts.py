"""Prompts with an exact token count, built from the server's own tokenizer.

How: from the tokenizer's vocabulary we keep the *word tokens*, ids whose text is a space followed
by letters only (``" cat"``) and which encode back to exactly that one id. Common pre-tokenizers
(byte-level BPE, Metaspace, whitespace) split text at each space-letter boundary, so a prompt made
of N such words joined together encodes to exactly those N ids. Every prompt is encoded once more
and its length checked (``ValueError`` if it is off), so an unusual tokenizer is caught rather than
silently measured with wrong lengths.

Shared prefixes: the 512-token block with id ``b`` is always the same word sequence (drawn from a
generator seeded with ``(seed, b)``), so requests listing the same leading ``prefix_blocks`` share
exactly those leading tokens. The rest of the prompt is drawn from ``(seed, request id)``.
Special tokens the tokenizer adds itself (e.g. a BOS) count towards the length.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from experiments.workloads.types import BLOCK_TOKENS, TraceRequest

#: fewer distinct word tokens than this makes prompts too repetitive to be a fair workload
MIN_WORD_TOKENS = 32


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """Load ``<directory>/tokenizer.json`` (or the file itself) with the ``tokenizers`` library."""
    path = Path(directory)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"--tokenizer: expected a directory holding tokenizer.json, {path} not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises its own exception type
        raise ValueError(f"{path}: expected a Hugging Face tokenizer.json ({exc})") from None


def word_token_ids(tokenizer: Tokenizer) -> np.ndarray:
    """Ids of the vocabulary's single-token space-prefixed words, sorted; shape (n,)."""
    ids = []
    for token_id in range(tokenizer.get_vocab_size(with_added_tokens=False)):
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        if len(text) >= 3 and text[0] == " " and text[1:].isascii() and text[1:].isalpha() \
                and tokenizer.encode(text, add_special_tokens=False).ids == [token_id]:
            ids.append(token_id)
    return np.asarray(ids, dtype=np.int64)


class PromptSynthesizer:
    """Build prompt token ids and text of exactly ``request.input_tokens`` tokens.

    ``seed`` selects the content; benchmark rounds use different seeds so a server's prefix cache
    cannot reuse an earlier round's prompts, while all endpoints of one round get identical prompts.
    """

    def __init__(self, tokenizer: Tokenizer, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        self.seed = seed
        self.words = word_token_ids(tokenizer)
        if len(self.words) < MIN_WORD_TOKENS:
            raise ValueError(f"tokenizer: expected at least {MIN_WORD_TOKENS} single-token words (' word'), "
                             f"found {len(self.words)}; this tokenizer cannot make exact-length prompts")
        self.special_tokens = len(tokenizer.encode("", add_special_tokens=True).ids)
        self._blocks: dict[int, np.ndarray] = {}

    def _draw(self, key: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, key])
        return self.words[rng.integers(len(self.words), size=n)]

    def _block(self, block_id: int) -> np.ndarray:
        if block_id not in self._blocks:
            self._blocks[block_id] = self._draw(block_id, BLOCK_TOKENS)
        return self._blocks[block_id]

    def token_ids(self, request: TraceRequest) -> list[int]:
        """The prompt's ids without tokenizer-added special tokens: ``input_tokens - special`` ids."""
        n = request.input_tokens - self.special_tokens
        if n < 1:
            raise ValueError(f"request {request.request_id}: input_tokens {request.input_tokens} leaves no room "
                             f"after {self.special_tokens} special token(s)")
        shared = [self._block(b) for b in request.prefix_blocks]
        shared_ids = np.concatenate(shared)[:n] if shared else np.empty(0, dtype=np.int64)
        # the tail key mixes in 2**32 so it never collides with a block id
        tail = self._draw(2**32 + zlib.crc32(request.request_id.encode()), n - len(shared_ids))
        return np.concatenate([shared_ids, tail]).tolist()

    def text(self, request: TraceRequest) -> str:
        """The prompt text; raises ``ValueError`` unless it encodes to exactly ``input_tokens`` tokens."""
        text = self.tokenizer.decode(self.token_ids(request), skip_special_tokens=False)
        count = len(self.tokenizer.encode(text, add_special_tokens=True).ids)
        if count != request.input_tokens:
            raise ValueError(f"request {request.request_id}: synthesised prompt has {count} tokens, expected "
                             f"{request.input_tokens}; this tokenizer does not split text at spaces")
        return text
