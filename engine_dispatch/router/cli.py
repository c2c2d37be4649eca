"""``moesched route``: run the HTTP router in front of several OpenAI-compatible engines.

Example::

    moesched route --worker-urls http://127.0.0.1:30001 http://127.0.0.1:30002 \\
        --config configs/dispatch.toml --port 30000
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from aiohttp import web

from engine_dispatch.config import ScoredConfig, load_config
from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.factory import create_dispatcher, dispatcher_names
from engine_dispatch.late_binding import load_late_binding
from engine_dispatch.rebalance import SelectiveRebalancer
from engine_dispatch.router.app import ProxySettings, Router
from engine_dispatch.router.late_binding import LateBinder
from engine_dispatch.router.pool import EnginePool, PoolSettings
from engine_dispatch.router.request_parse import Tokenize
from perf_model.model_file import resolve_model

#: ``--late-binding`` given without a file: the built-in defaults
_DEFAULTS = "defaults"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker-urls", nargs="+", required=True, metavar="URL",
                        help="engine base URLs, e.g. http://127.0.0.1:30001")
    parser.add_argument("--policy", default="scored", choices=dispatcher_names(),
                        help="dispatch policy (default: scored)")
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML settings of the scored policy (default: built-in defaults)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=30000, help="port (default 30000)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer.json (HF tokenizers) for exact token blocks; without it "
                             "prompts are hashed in blocks of 4 x block_tokens characters")
    parser.add_argument("--load-kind", default="auto", choices=["auto", "sglang", "vllm", "none"],
                        help="load endpoint to poll: SGLang /v1/loads, vLLM /metrics, or none")
    parser.add_argument("--load-refresh-s", type=float, default=0.5,
                        help="load polling period in seconds (default 0.5)")
    parser.add_argument("--health-interval-s", type=float, default=2.0,
                        help="health-check period in seconds (default 2)")
    parser.add_argument("--health-timeout-s", type=float, default=5.0,
                        help="health-probe timeout in seconds (default 5); 3 failed probes in a "
                             "row without a proxied answer in between remove an engine")
    parser.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                        help="largest accepted request body (default 4 MiB)")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="engines tried per request when they fail before answering")
    parser.add_argument("--request-timeout-s", type=float, default=600.0,
                        help="upstream request timeout in seconds (default 600)")
    parser.add_argument("--late-binding", nargs="?", const=_DEFAULTS, default=None, metavar="TOML",
                        help="hold requests per engine while it is full and rebalance them before "
                             "sending ([hold] and [rebalance] tables, see configs/late_binding.toml; "
                             "without a file: defaults). Off when not given")
    parser.add_argument("--hold-max-in-flight", type=int, default=None, metavar="N",
                        help="with --late-binding: requests in flight per engine at which it is "
                             "full (overrides hold.max_in_flight)")


def _tokenizer(path: Path | None) -> Tokenize | None:
    if path is None:
        return None
    from tokenizers import Tokenizer
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises its own exception type
        raise ValueError(f"{path}: not a tokenizers JSON file: {exc}") from exc
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def build_router(args: argparse.Namespace) -> Router:
    """Validate the arguments and assemble the router (no I/O until the app starts)."""
    config = load_config(args.config) if args.config is not None else ScoredConfig()
    if args.policy != "scored" and args.config is not None:
        raise ValueError(f"--config applies to --policy scored, not {args.policy}")
    options = {"config": config} if args.policy == "scored" else {}
    dispatcher = create_dispatcher(args.policy, len(args.worker_urls), **options)
    for url in args.worker_urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--worker-urls: expected http(s)://host:port, got {url!r}")
    pool = EnginePool(list(args.worker_urls), dispatcher, PoolSettings(
        health_interval_s=args.health_interval_s, health_timeout_s=args.health_timeout_s,
        load_refresh_s=args.load_refresh_s,
        load_kind=args.load_kind))
    settings = ProxySettings(max_body_bytes=args.max_body_bytes, max_attempts=args.max_attempts,
                             request_timeout_s=args.request_timeout_s,
                             block_tokens=config.dispatch.block_tokens)
    late = _late_binder(args, pool, dispatcher)
    return Router(pool, dispatcher, settings, _tokenizer(args.tokenizer), late)


def _late_binder(args: argparse.Namespace, pool: EnginePool, dispatcher: Dispatcher) -> LateBinder | None:
    if args.late_binding is None:
        if args.hold_max_in_flight is not None:
            raise ValueError("--hold-max-in-flight applies with --late-binding only")
        return None
    config = load_late_binding(None if args.late_binding == _DEFAULTS else args.late_binding)
    if args.hold_max_in_flight is not None:
        config = dataclasses.replace(config, hold=dataclasses.replace(
            config.hold, max_in_flight=args.hold_max_in_flight))
    try:
        model = resolve_model(config.hold.step_model)
    except (ValueError, OSError) as exc:
        raise ValueError(f"hold.step_model: {exc}") from exc
    return LateBinder(config, SelectiveRebalancer(config.rebalance, model), pool, dispatcher)


def run(args: argparse.Namespace) -> int:
    router = build_router(args)
    print(f"moesched route: {args.policy} over {len(args.worker_urls)} engine(s) on "
          f"http://{args.host}:{args.port}", flush=True)
    web.run_app(router.application(), host=args.host, port=args.port, print=None,
                access_log=None)
    return 0
