"""The interface every request policy implements (one class per policy; see ``policies``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from request_sched.types import WaitingRequest


class RequestQueue(ABC):
    """A waiting queue that yields requests in the policy's admission order.

    ``now`` is the host clock in seconds (same clock as ``WaitingRequest.enqueue_s``). Hosts admit by
    repeatedly calling :meth:`peek` / :meth:`pop` until a request does not fit; a request that was
    popped but could not be admitted goes back with :meth:`add`.
    """

    @abstractmethod
    def add(self, request: WaitingRequest, now: float) -> None:
        """Insert a request (new arrival or preempted/returned request)."""

    @abstractmethod
    def pop(self, now: float) -> WaitingRequest:
        """Remove and return the request to admit next. Raises IndexError when empty."""

    @abstractmethod
    def peek(self, now: float) -> WaitingRequest:
        """Return the request :meth:`pop` would return, without removing it."""

    @abstractmethod
    def remove(self, request: WaitingRequest) -> None:
        """Remove a specific request (aborted, or moved to another engine)."""

    @abstractmethod
    def ordered(self, now: float) -> list[WaitingRequest]:
        """All waiting requests in admission order (does not change the queue)."""

    @abstractmethod
    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[WaitingRequest]:
        raise TypeError("iterate over ordered(now): admission order may depend on the time")

    def on_finished(self, request: WaitingRequest, output_tokens: int) -> None:
        """Tell the policy a request finished with ``output_tokens`` (feeds predictors)."""

    def on_prefill(self, tokens: int) -> None:
        """Tell the policy one engine step computed ``tokens`` uncached prefill tokens.

        Hosts call it after every step (SGLang's ``hrrn`` ages requests by this counter)."""
