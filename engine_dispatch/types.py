"""What hosts tell a dispatcher about engines and requests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineLoad:
    """Latest load report of one engine.

    Attributes:
        engine_id: index of the engine in the host's engine list (0..N-1).
        running: requests in the running batch.
        waiting: requests in the waiting queue.
        kv_used_tokens: KV-cache tokens in use by requests; evictable prefix-cache blocks are not
            "in use" (SGLang's num_used_tokens = capacity - available - evictable).
        kv_capacity_tokens: KV-cache capacity in tokens (> 0).
        pending_prefill_tokens: uncached prompt tokens of waiting (and not yet fully prefilled)
            requests: prefill work already queued on the engine.
        healthy: False when the host saw the engine fail; dispatchers never pick it.
        reported_s: host clock (seconds) of the report, to judge staleness.
    """

    engine_id: int
    running: int = 0
    waiting: int = 0
    kv_used_tokens: int = 0
    kv_capacity_tokens: int = 1
    pending_prefill_tokens: int = 0
    healthy: bool = True
    reported_s: float = 0.0

    @property
    def kv_used_fraction(self) -> float:
        return self.kv_used_tokens / max(1, self.kv_capacity_tokens)


@dataclass(frozen=True)
class DispatchRequest:
    """A request to place on an engine.

    Attributes:
        request_id: the host's id.
        prompt_tokens: prompt length in tokens.
        block_hashes: chained hashes of the prompt's leading full token blocks (block i's hash
            covers tokens 0..(i+1)*block_tokens-1), used for prefix matching; may be empty.
        text: prompt text, for text-matching baselines (sglang-router's cache_aware); may be None.
        session_id: session/user id (header or the ``user`` field) for stickiness, or None.
        max_new_tokens: output cap.
        priority: priority class, larger is more urgent.
    """

    request_id: str
    prompt_tokens: int
    block_hashes: tuple[int, ...] = ()
    text: str | None = None
    session_id: str | None = None
    max_new_tokens: int = 0
    priority: int = 0
