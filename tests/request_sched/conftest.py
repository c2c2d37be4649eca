"""Shared helpers for request_sched tests: a linear step model with known coefficients."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from perf_model.batch import BatchShape, MoeFactors


@dataclass(frozen=True)
class LinearStepModel:
    """step = overhead + per_prefill * prefill + per_seq * decode_seqs + per_kv * kv_context."""

    overhead_s: float = 0.010
    per_prefill_s: float = 50e-6
    per_seq_s: float = 200e-6
    per_kv_s: float = 1e-8

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        return (self.overhead_s + self.per_prefill_s * batch.prefill_tokens
                + self.per_seq_s * batch.decode_seqs + self.per_kv_s * batch.kv_context_tokens)


@pytest.fixture(scope="session")
def linear_model() -> LinearStepModel:
    return LinearStepModel()
