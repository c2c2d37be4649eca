"""Clean JSON errors in the OpenAI shape: ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

from aiohttp import web


class RouterError(Exception):
    """An error the router answers with ``status`` and an OpenAI-style JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return web.json_response(
            {"error": {"message": self.message, "type": kind, "code": self.code}},
            status=self.status)
