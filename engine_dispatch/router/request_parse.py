"""Turn an OpenAI-compatible request body into what the dispatcher needs.

Prompt text: ``prompt`` (completions; a string, a list of strings joined by newlines, or token
ids) or ``messages`` (chat; ``role: content`` lines, content parts of type text concatenated).
Session: header ``x-session-id``, else header ``x-user-id``, else the body's ``user`` field.
Token counts and block hashes: with a tokenizer, the prompt's token ids in blocks of
``block_tokens``; without, text blocks of ``block_tokens * 4`` characters and ``len / 4`` tokens
(see :mod:`engine_dispatch.prompt_hashing`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine_dispatch.prompt_hashing import (chained_block_hashes, estimated_tokens,
                                            text_block_hashes)
from engine_dispatch.router.errors import RouterError
from engine_dispatch.types import DispatchRequest

#: text -> token ids
Tokenize = Callable[[str], Sequence[int]]


@dataclass(frozen=True)
class ParsedRequest:
    """A validated body: the model asked for (or None), whether it streams, the dispatch view."""

    model: str | None
    stream: bool
    dispatch: DispatchRequest


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RouterError(400, "invalid_messages", "'messages' must be a non-empty list")
    lines = []
    for message in messages:
        if not isinstance(message, dict):
            raise RouterError(400, "invalid_messages", "each message must be an object")
        content = message.get("content", "")
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        lines.append(f"{message.get('role', '')}: {content}")
    return "\n".join(lines)


def _prompt(prompt: Any) -> tuple[str, list[int] | None]:
    """(text, token ids if the client sent ids)."""
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt), None
    if isinstance(prompt, list) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return " ".join(map(str, prompt)), list(prompt)
    raise RouterError(400, "invalid_prompt",
                      "'prompt' must be a string, a list of strings or a list of token ids")


def parse_request(raw: bytes, chat: bool, headers: Mapping[str, str], request_id: str,
                  block_tokens: int, tokenize: Tokenize | None) -> ParsedRequest:
    """Validate ``raw`` (the body) and build the dispatch view. Raises RouterError (400)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RouterError(400, "invalid_json", "request body must be a JSON object")
    if chat:
        text, ids = _chat_text(body.get("messages")), None
    else:
        text, ids = _prompt(body.get("prompt"))
    if ids is None and tokenize is not None:
        ids = list(tokenize(text))
    if ids is not None:
        prompt_tokens, hashes = max(1, len(ids)), chained_block_hashes(ids, block_tokens)
    else:
        prompt_tokens, hashes = estimated_tokens(text), text_block_hashes(text, block_tokens)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RouterError(400, "invalid_model", "'model' must be a string")
    user = body.get("user")
    session = headers.get("x-session-id") or headers.get("x-user-id") or (
        user if isinstance(user, str) and user else None)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 0))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        max_tokens = 0
    dispatch = DispatchRequest(request_id=request_id, prompt_tokens=prompt_tokens,
                               block_hashes=hashes, text=text, session_id=session,
                               max_new_tokens=max_tokens)
    return ParsedRequest(model=model, stream=body.get("stream") is True, dispatch=dispatch)
