"""Loader for the Azure LLM inference trace 2023 (``TIMESTAMP,ContextTokens,GeneratedTokens``).

Source: Azure/AzurePublicDataset, ``data/AzureLLMInferenceTrace_{code,conv}.csv`` (CC-BY-4.0,
Splitwise, ISCA'24). ``TIMESTAMP`` is a wall-clock time such as ``2023-11-16 18:17:03.9799600``
(fractional digits beyond microseconds are dropped); arrivals are made relative to the earliest row.
The trace has no prefixes, sessions or priorities.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime

from experiments.workloads._parse import parse_int
from experiments.workloads.types import TraceRequest

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _parse_timestamp(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{where}: field TIMESTAMP: expected a date-time like '2023-11-16 18:17:03.9799600', got {text!r}"
        ) from None


def load_azure_csv(path: str | os.PathLike[str], workload_class: str | None = None) -> list[TraceRequest]:
    """Read an Azure 2023 trace CSV into requests sorted by arrival.

    Args:
        path: CSV file with a header naming at least ``TIMESTAMP``, ``ContextTokens``,
            ``GeneratedTokens``.
        workload_class: tag stored on every request (e.g. ``"conv"``), or None.

    Returns:
        One request per row, ``request_id = "azure-<row index>"`` (0-based in file order),
        ``arrival_s`` = seconds after the earliest timestamp, sorted by arrival (stable).

    Raises:
        ValueError: ``"file:line: field X: expected ..."`` for a missing column, a malformed row or
            a non-positive token count; ``"file: no requests"`` for an empty trace.
    """
    name = os.fspath(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in AZURE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{name}:1: header: expected columns {', '.join(AZURE_COLUMNS)}, missing {', '.join(missing)}")
        rows: list[tuple[datetime, int, int]] = []
        for row in reader:
            where = f"{name}:{reader.line_num}"
            if None in row or any(row.get(c) is None for c in AZURE_COLUMNS):
                raise ValueError(f"{where}: row: expected {len(reader.fieldnames or [])} comma-separated fields")
            rows.append((
                _parse_timestamp(row["TIMESTAMP"], where),
                parse_int(row["ContextTokens"], where, "ContextTokens", 1),
                parse_int(row["GeneratedTokens"], where, "GeneratedTokens", 1),
            ))
    if not rows:
        raise ValueError(f"{name}: no requests")
    start = min(ts for ts, _, _ in rows)
    requests = [
        TraceRequest(request_id=f"azure-{i}", arrival_s=(ts - start).total_seconds(), input_tokens=inp,
                     output_tokens=out, workload_class=workload_class)
        for i, (ts, inp, out) in enumerate(rows)
    ]
    return sorted(requests, key=lambda r: r.arrival_s)
