"""What a host tells a request policy about one waiting request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WaitingRequest:
    """A request waiting for admission on one engine, as the host sees it.

    Attributes:
        request_id: the host's id for the request.
        enqueue_s: host clock (seconds, monotonic) when the request entered this waiting queue
            for the first time; a preempted request keeps its original value.
        prompt_tokens: prompt length in tokens.
        cached_tokens: prompt tokens the engine's prefix cache already holds (0 if unknown);
            the host refreshes it when it re-matches prefixes.
        max_new_tokens: the request's output cap (``max_tokens``).
        generated_tokens: output tokens already produced (> 0 after a preemption).
        priority: priority class, larger is more urgent (hosts map their own convention).
        workload_class: tag for the output-length predictor, or None to infer one.
        prefix_blocks: ids of the prompt's leading 512-token blocks, as in
            ``experiments.workloads.TraceRequest.prefix_blocks`` (empty if unknown); only SGLang's
            in-batch prefix check (``lpm``/``hrrn``) reads them.
        host_ref: opaque handle the host may attach (e.g. SGLang's ``Req``); never read here.
    """

    request_id: str
    enqueue_s: float
    prompt_tokens: int
    max_new_tokens: int
    cached_tokens: int = 0
    generated_tokens: int = 0
    priority: int = 0
    workload_class: str | None = None
    prefix_blocks: tuple[int, ...] = ()
    host_ref: object = None

    @property
    def uncached_prompt_tokens(self) -> int:
        """Prompt tokens that still have to be prefilled."""
        return max(0, self.prompt_tokens - self.cached_tokens)
