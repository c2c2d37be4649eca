"""Command lines and environments that start a vanilla vLLM or a stock/patched SGLang CPU server.

Both engines live in their own virtual environments (``make engines`` builds them with
``scripts/setup_vllm.sh`` and ``scripts/setup_sglang.sh``) and serve the tiny Qwen3-MoE built by
``scripts/build_tiny_model.py``. Settings keep each server small on a 2-core, CPU-only machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.engines.errors import EngineError
from experiments.engines.ports import HOST

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "tiny-qwen3-moe"
#: Test-support stand-in for SGLang's GPU kernel package; on PYTHONPATH for CPU SGLang servers only.
SGL_KERNEL_STANDIN = REPO_ROOT / "tests" / "support" / "sgl_kernel_cpu_standin"
ENGINE_KINDS = ("vllm", "sglang")
#: ``SGLANG_PLUGINS`` is a whitelist of plugin names; naming none that exists loads no plugin.
NO_SGLANG_PLUGINS = "none"
SETUP_HINT = "run `make engines`"


@dataclass(frozen=True)
class ServerConfig:
    """One server to start.

    ``extra_args`` are appended to the engine's own command line (e.g. ``("--dp-size", "2")``) and
    ``extra_env`` overrides the environment (e.g. ``{"MOESCHED_ENABLE": "1"}``). A stock SGLang
    server loads no plugin; ``sglang_plugins=True`` lets SGLang load the installed ones (moesched).
    ``vllm_kv_cache_gib`` is vLLM's KV cache in GiB; ``sglang_max_total_tokens`` caps SGLang's KV
    pool in tokens; ``max_model_len`` is the longest prompt + output in tokens (vLLM).
    """

    kind: str
    port: int
    model: Path = DEFAULT_MODEL
    extra_args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    sglang_plugins: bool = False
    vllm_kv_cache_gib: int = 1
    sglang_max_total_tokens: int = 4096
    max_model_len: int = 2048

    @property
    def model_name(self) -> str:
        """The name clients send as ``model`` (the model directory's name)."""
        return self.model.name

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def venv_dir(kind: str) -> Path:
    """The engine's virtualenv: ``$MOESCHED_<KIND>_VENV`` or ``<repo>/.venvs/<kind>``."""
    return Path(os.environ.get(f"MOESCHED_{kind.upper()}_VENV", REPO_ROOT / ".venvs" / kind))


def check_installed(config: ServerConfig) -> None:
    """Raise ``EngineError`` (saying to run ``make engines``) if the venv or the model is missing."""
    if config.kind not in ENGINE_KINDS:
        raise EngineError(f"unknown engine {config.kind!r}; expected one of {', '.join(ENGINE_KINDS)}")
    python = venv_dir(config.kind) / "bin" / "python"
    if not python.exists():
        raise EngineError(f"{config.kind} venv missing ({python} not found); {SETUP_HINT}")
    if not (config.model / "config.json").exists():
        raise EngineError(f"model missing ({config.model / 'config.json'} not found); {SETUP_HINT}")


def _vllm(config: ServerConfig, base_env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    argv = [str(venv_dir("vllm") / "bin" / "vllm"), "serve", str(config.model),
            "--served-model-name", config.model_name, "--host", HOST, "--port", str(config.port),
            "--dtype", "bfloat16", "--max-model-len", str(config.max_model_len), "--enforce-eager"]
    env = {"VLLM_CPU_KVCACHE_SPACE": str(config.vllm_kv_cache_gib), "VLLM_NO_USAGE_STATS": "1",
           "DO_NOT_TRACK": "1"}
    return argv, env


def _sglang_ranks(args: Sequence[str]) -> int:
    """Scheduler processes (one per DP x TP rank) that ``args`` start; 1 unless --dp-size/--tp-size say."""
    ranks = 1
    for flag_names in (("--dp-size", "--dp"), ("--tp-size", "--tp")):
        for i, arg in enumerate(args[:-1]):
            if arg in flag_names:
                if not args[i + 1].isdigit() or int(args[i + 1]) < 1:
                    raise EngineError(f"SGLang argument {arg}: expected a positive integer, got {args[i + 1]!r}")
                ranks *= int(args[i + 1])
    return ranks


def _omp_threads_per_rank(config: ServerConfig) -> int:
    """OpenMP threads each SGLang rank may use: the cores but one, shared by the ranks (at least 1).

    SGLang 0.5.23 pins each rank's OpenMP threads to its ``SGLANG_CPU_OMP_THREADS_BIND`` cores only
    on AMX or arm64 CPUs (``sglang.srt.distributed.bootstrap._init_cpu_threads_env``); elsewhere
    every rank's torch starts one thread per core, and with 2 ranks on 2 cores their spinning
    OpenMP barriers stall each other (measured here: median TPOT 46-165 ms per round vs 4.6-5.6 ms
    with one thread per rank, docs/engines.md). One core is left to the HTTP server, tokenizer,
    detokenizer and DP controller, as vLLM's CPU backend does by default (its automatic binding
    reserves one core for its front-end process).
    """
    return max(1, ((os.cpu_count() or 1) - 1) // _sglang_ranks(config.extra_args))


def _sglang(config: ServerConfig, base_env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    argv = [str(venv_dir("sglang") / "bin" / "python"), "-m", "sglang.launch_server",
            "--model-path", str(config.model), "--served-model-name", config.model_name,
            "--device", "cpu", "--host", HOST, "--port", str(config.port),
            "--max-total-tokens", str(config.sglang_max_total_tokens), "--mem-fraction-static", "0.1"]
    pythonpath = os.pathsep.join(p for p in (str(SGL_KERNEL_STANDIN), base_env.get("PYTHONPATH")) if p)
    env = {"SGLANG_USE_CPU_ENGINE": "1", "PYTHONPATH": pythonpath,
           "OMP_NUM_THREADS": base_env.get("OMP_NUM_THREADS", str(_omp_threads_per_rank(config)))}
    if not config.sglang_plugins:
        env["SGLANG_PLUGINS"] = NO_SGLANG_PLUGINS
    return argv, env


def build_command(config: ServerConfig, base_env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Return (argv, full environment) starting ``config``'s server offline on 127.0.0.1."""
    if config.kind not in ENGINE_KINDS:
        raise EngineError(f"unknown engine {config.kind!r}; expected one of {', '.join(ENGINE_KINDS)}")
    env = dict(os.environ if base_env is None else base_env)
    argv, engine_env = (_vllm if config.kind == "vllm" else _sglang)(config, env)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(engine_env)
    env.update(config.extra_env)
    return argv + list(config.extra_args), env


def parse_env_assignments(items: Sequence[str]) -> dict[str, str]:
    """Turn ``["KEY=VALUE", ...]`` into a dict; raises ``EngineError`` naming a malformed item."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not key.replace("_", "a").isalnum():
            raise EngineError(f"--env {item!r} is not KEY=VALUE")
        env[key] = value
    return env
