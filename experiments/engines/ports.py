"""Loopback ports for engine servers: pick a free one, or check that a chosen one is free."""

from __future__ import annotations

import socket

from experiments.engines.errors import EngineError

HOST = "127.0.0.1"


def pick_free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now (the kernel picks it).

    Another process may still take it before the server binds it; ``ensure_port_free`` on start and
    the server's own bind error catch that rare race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(port: int, host: str = HOST) -> None:
    """Raise ``EngineError`` if ``port`` is out of range or cannot be bound on ``host``."""
    if not 1 <= port <= 65535:
        raise EngineError(f"port {port} is out of range; expected 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EngineError(f"port {port} on {host} is busy ({exc.strerror}); "
                              "pick another with --port or omit it to get a free one") from None
