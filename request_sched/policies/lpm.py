"""SGLang 0.5.23's ``lpm``: longest prefix match first, with the in-batch prefix check.

Definition (``srt/managers/schedule_policy.py``, ``_sort_by_longest_prefix`` and
``_compute_prefix_matches``): every request is matched against the radix cache
(``num_matched_prefix_tokens``, here ``WaitingRequest.cached_tokens``); the list is sorted
(stable) ascending by ``-num_matched_prefix_tokens``, except that requests flagged by the in-batch
prefix check sort last (key ``+inf``). The check walks the list in its current order: a request
whose cache match is at most ``IN_BATCH_PREFIX_CACHING_CHECK_THRESHOLD = 32`` tokens is matched
against a scratch radix tree of the waiting requests checked before it; if it shares at least
``IN_BATCH_PREFIX_CACHING_DEPRIORITIZE_THRESHOLD = 32`` tokens with one of them it is deprioritized,
else it is inserted. The idea: of several uncached requests with a common prefix, admit one first
so the others hit the cache afterwards. No sort happens when more than 128 requests wait
(:mod:`request_sched.policies.sglang_list`).

Prefixes here are ``WaitingRequest.prefix_blocks`` (ids of whole 512-token blocks), so "shares at
least 32 tokens" is "has the same first block"; requests without blocks are never deprioritized.
"""

from __future__ import annotations

from request_sched.policies.sglang_list import SglangListQueue
from request_sched.types import WaitingRequest

#: SGLang 0.5.23 ``IN_BATCH_PREFIX_CACHING_CHECK_THRESHOLD`` (tokens, environment default)
IN_BATCH_CHECK_TOKENS = 32


def in_batch_deprioritized(waiting: list[WaitingRequest]) -> set[str]:
    """Ids SGLang's in-batch prefix check would deprioritize, walking ``waiting`` in order."""
    seen_first_blocks: set[int] = set()
    flagged: set[str] = set()
    for r in waiting:
        if r.cached_tokens > IN_BATCH_CHECK_TOKENS or not r.prefix_blocks:
            continue
        first = r.prefix_blocks[0]
        if first in seen_first_blocks:
            flagged.add(r.request_id)
        else:
            seen_first_blocks.add(first)
    return flagged


class LpmQueue(SglangListQueue):
    """SGLang's lpm: most cached prompt tokens first; duplicate uncached prefixes last."""

    def _sort(self, waiting: list[WaitingRequest], now: float) -> None:
        flagged = in_batch_deprioritized(waiting)
        waiting.sort(
            key=lambda r: float("inf") if r.request_id in flagged else -r.cached_tokens
        )
