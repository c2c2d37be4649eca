"""Loader for Mooncake traces (JSON lines: ``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``).

Source: kvcache-ai/Mooncake, ``FAST25-release/traces/*.jsonl`` (Apache-2.0). ``hash_ids`` lists one id
per 512-token block of the prompt (the last block may be partial); two requests share a prompt
prefix exactly as far as their leading ids agree.

Mapping to :class:`TraceRequest`:

- ``prefix_blocks`` keeps only the *whole* blocks: ``hash_ids[: input_length // 512]`` (the partial
  tail block cannot be shared as a full block).
- ``session_id``: the trace has no user ids. Requests whose *first* block id agrees share at least
  their first 512 prompt tokens (the system prompt plus the start of the conversation), so they are
  treated as one session: ``session_id = "mc-<hash_ids[0]>"``. A request with no ``hash_ids`` has no
  session. On the bundled synthetic trace this gives 2,211 sessions for 3,993 requests.
"""

from __future__ import annotations

import json
import os

from experiments.workloads._parse import parse_float, parse_int
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest

MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")


def _parse_hash_ids(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: field hash_ids: expected a list of integers, got {type(value).__name__}")
    return tuple(parse_int(v, where, "hash_ids", 0) for v in value)


def load_mooncake_jsonl(path: str | os.PathLike[str], workload_class: str | None = None) -> list[TraceRequest]:
    """Read a Mooncake JSONL trace into requests sorted by arrival.

    Returns:
        One request per non-blank line, ``request_id = "mooncake-<index>"`` (0-based in file
        order), ``arrival_s`` = (timestamp - earliest timestamp) / 1000.

    Raises:
        ValueError: ``"file:line: field X: expected ..."`` for invalid JSON, a missing field, a bad
            value, or more ``hash_ids`` than the prompt has blocks; ``"file: no requests"`` if empty.
    """
    name = os.fspath(path)
    parsed: list[tuple[float, int, int, tuple[int, ...]]] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{name}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: line: expected a JSON object ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: line: expected a JSON object, got {type(obj).__name__}")
            for key in MOONCAKE_FIELDS:
                if key not in obj:
                    raise ValueError(f"{where}: field {key}: expected present, missing")
            inp = parse_int(obj["input_length"], where, "input_length", 1)
            hash_ids = _parse_hash_ids(obj["hash_ids"], where)
            if len(hash_ids) > -(-inp // BLOCK_TOKENS):
                raise ValueError(f"{where}: field hash_ids: expected at most ceil(input_length/{BLOCK_TOKENS}) = "
                                 f"{-(-inp // BLOCK_TOKENS)} ids, got {len(hash_ids)}")
            parsed.append((parse_float(obj["timestamp"], where, "timestamp") / 1000.0, inp,
                           parse_int(obj["output_length"], where, "output_length", 1), hash_ids))
    if not parsed:
        raise ValueError(f"{name}: no requests")
    start = min(p[0] for p in parsed)
    requests = [
        TraceRequest(
            request_id=f"mooncake-{i}", arrival_s=ts - start, input_tokens=inp, output_tokens=out,
            prefix_blocks=hash_ids[: inp // BLOCK_TOKENS],
            session_id=f"mc-{hash_ids[0]}" if hash_ids else None, workload_class=workload_class,
        )
        for i, (ts, inp, out, hash_ids) in enumerate(parsed)
    ]
    return sorted(requests, key=lambda r: r.arrival_s)
