"""A minimal stand-in engine server for unit tests of ``experiments.engines`` (test support only).

Run as ``python fake_openai_server.py ... --port P ...`` (other arguments are ignored, so it accepts
vLLM's or SGLang's command line): answers ``GET /health`` and ``POST /v1/completions`` on 127.0.0.1.
``FAKE_SERVER_MODE=die`` makes it print a line and exit with code 3 instead; ``FAKE_SERVER_MODE=
ignore-sigterm`` makes it ignore SIGTERM, so only SIGKILL stops it.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(200, {}) if self.path == "/health" else self._reply(404, {})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/completions":
            return self._reply(404, {})
        self._reply(200, {"model": request["model"], "choices": [{"index": 0, "text": "x"}]})

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    mode = os.environ.get("FAKE_SERVER_MODE", "serve")
    if mode == "die":
        print("fake engine: cannot start (FAKE_SERVER_MODE=die)", flush=True)
        sys.exit(3)
    if mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    port = int(sys.argv[sys.argv.index("--port") + 1])
    ThreadingHTTPServer(("127.0.0.1", port), _Handler).serve_forever()


if __name__ == "__main__":
    main()
