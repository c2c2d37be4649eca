"""The request record every workload produces."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Tokens per prefix block. Mooncake's ``hash_ids`` are 512-token blocks; the project uses the same
#: granularity for every workload so prefix sharing means the same thing everywhere.
BLOCK_TOKENS = 512


@dataclass(frozen=True)
class TraceRequest:
    """One request of a workload.

    Attributes:
        request_id: unique within the workload.
        arrival_s: arrival time in seconds from the start of the workload (sorted ascending).
        input_tokens: prompt length in tokens.
        output_tokens: tokens to generate (``max_tokens`` with ``ignore_eos`` on real servers).
        prefix_blocks: ids of the leading ``BLOCK_TOKENS``-token blocks of the prompt; two requests
            whose block ids agree up to position i share their first ``(i + 1) * BLOCK_TOKENS``
            prompt tokens. Only whole blocks are listed: ``len(prefix_blocks) * BLOCK_TOKENS <=
            input_tokens``. Empty when the prompt shares nothing.
        session_id: conversation/user the request belongs to, or None.
        priority: scheduling priority class; larger is more urgent, 0 is the default.
        workload_class: a tag naming the kind of request (e.g. "code", "conv"), used by the
            output-length predictor to learn per class; None if unknown.
    """

    request_id: str
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = field(default=())
    session_id: str | None = None
    priority: int = 0
    workload_class: str | None = None
