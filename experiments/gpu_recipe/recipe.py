"""The GPU recipe as data: every command a user with one 8-GPU node runs to compare vanilla vLLM,
stock SGLang and SGLang with moesched on Qwen3-30B-A3B (DP attention + expert parallelism).

Each :class:`Step` holds one command line as an argv tuple and names the parser that checks it
(``tests/gpu_recipe/test_recipe_syntax.py`` parses every line with SGLang's, vLLM's and moesched's
own argparse on the CPU). :func:`shell_script` renders the steps as one bash script
(``python -m experiments.gpu_recipe``); ``docs/gpu_recipe.md`` explains it.

Phases: (1) a stock SGLang server records per-token routing while ``moesched bench`` sends traffic,
(2) ``moesched place`` solves a placement from one rank's dump, (3) ``ROUNDS`` rounds, each starting
the three servers one after another (they each need all 8 GPUs) in an order rotated per round,
replaying the same trace on each with ``moesched bench``, (4) ``python -m experiments.report``
joins the runs with ratios against vLLM.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

MODEL = "Qwen/Qwen3-30B-A3B"        # 48 MoE layers, 128 experts, top-8 (its config.json)
GPUS = 8                            # one node of H100s; DP attention and EP both span all of them
REDUNDANT_EXPERTS = 8               # (128 + 8) / 8 = 17 expert slots per GPU
CONTEXT_TOKENS = 8192               # prompt + output limit, the same on all three servers
A2A_BACKEND = "deepep"              # SGLang's EP all-to-all; needs DeepEP installed
TOKENIZER_DIR = "models/qwen3-30b-a3b"   # tokenizer.json of MODEL (downloaded in step "tokenizer")
OUT = "results/gpu"                 # everything the recipe writes
DUMP_DIR = f"{OUT}/expert_dump"     # SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR of the recording run
ROUTING_STATS = f"{OUT}/routing_rank0.pt"
PLACEMENT = f"{OUT}/placement.json"
MOESCHED_CONFIG = "configs/moesched.toml"   # defaults: sjf-aging (H100 step model), scored dispatch
ROUNDS = 3
PORTS = {"vllm": 8000, "sglang": 30000, "moesched": 30001}
RECORD_PORT = 30000

#: the replayed workload (bundled trace), shared by the recording traffic and every bench run
TRACE_ARGS = ("--trace", "data/traces/azure2023_conv.csv", "--format", "azure",
              "--workload-class", "conv", "--max-total-tokens", str(CONTEXT_TOKENS))
BENCH_ARGS = (*TRACE_ARGS, "--rate", "8", "--seed", "0",
              "--slo-ttft-ms", "2000", "--slo-tpot-ms", "100", "--request-timeout", "1800")


@dataclass(frozen=True)
class Step:
    """One command of the recipe.

    ``tool`` is the parser that checks ``argv``: ``sglang`` (``python -m sglang.launch_server``
    arguments after the module), ``vllm`` (``vllm serve`` arguments after ``serve``), ``moesched``
    (``argv[1]`` is the subcommand) or ``shell`` (checked only by ``bash -n``). ``background``
    servers are started in their own process group, polled on ``/health`` until ready, and stopped
    after the next foreground steps of their phase.
    """

    name: str
    tool: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    background: bool = False
    port: int | None = None

    def args(self) -> list[str]:
        """The arguments the tool's own parser receives (program and subcommand stripped)."""
        skip = {"sglang": 3, "vllm": 2, "moesched": 2, "shell": 0}[self.tool]
        return list(self.argv[skip:])


def _sglang_common(port: int) -> tuple[str, ...]:
    """Launch arguments shared by every SGLang server of the recipe (stock, recording, patched)."""
    return ("--model-path", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--tp-size", str(GPUS), "--attn-dp-size", str(GPUS), "--ep-size", str(GPUS),
            "--moe-a2a-backend", A2A_BACKEND, "--ep-num-redundant-experts", str(REDUNDANT_EXPERTS),
            "--context-length", str(CONTEXT_TOKENS))


def record_server() -> Step:
    """Stock SGLang recording every token's top-k experts (``per_token``: gives transitions)."""
    argv = ("python", "-m", "sglang.launch_server", *_sglang_common(RECORD_PORT),
            "--expert-distribution-recorder-mode", "per_token")
    return Step("record-server", "sglang", argv, env=(("SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR", DUMP_DIR),),
                background=True, port=RECORD_PORT)


def stock_sglang() -> Step:
    """Stock SGLang: its defaults (FCFS, auto DP balancing) plus online EPLB."""
    argv = ("python", "-m", "sglang.launch_server", *_sglang_common(PORTS["sglang"]), "--enable-eplb")
    return Step("sglang", "sglang", argv, background=True, port=PORTS["sglang"])


def patched_sglang() -> Step:
    """SGLang with moesched: same layout, the solved placement, moesched's queue and dispatcher.

    ``moesched serve`` would add ``--load-balance-method total_tokens`` (DP attention ranks count
    as DP ranks) and ``--enable-mixed-chunk`` (``[launch] mixed_chunk``, on by default) itself;
    both are written out so the script shows every flag that differs from stock SGLang's line.
    """
    argv = ("moesched", "serve", "--moesched-config", MOESCHED_CONFIG, *_sglang_common(PORTS["moesched"]),
            "--init-expert-location", PLACEMENT, "--load-balance-method", "total_tokens", "--enable-mixed-chunk")
    return Step("moesched", "moesched", argv, background=True, port=PORTS["moesched"])


def vanilla_vllm() -> Step:
    """Vanilla vLLM: DP attention 8 + expert parallelism, FCFS, no EPLB (its defaults)."""
    argv = ("vllm", "serve", MODEL, "--host", "127.0.0.1", "--port", str(PORTS["vllm"]),
            "--data-parallel-size", str(GPUS), "--enable-expert-parallel",
            "--max-model-len", str(CONTEXT_TOKENS))
    return Step("vllm", "vllm", argv, background=True, port=PORTS["vllm"])


def _http_post(name: str, port: int, path: str) -> Step:
    return Step(name, "shell", ("curl", "-fsS", "-X", "POST", f"http://127.0.0.1:{port}{path}"))


def bench(label: str, port: int, out: str, max_requests: int = 1000) -> Step:
    """``moesched bench`` replaying the trace's first ``max_requests`` requests against one server."""
    argv = ("moesched", "bench", *BENCH_ARGS, "--max-requests", str(max_requests),
            "--endpoint", f"{label}=http://127.0.0.1:{port}", "--tokenizer", TOKENIZER_DIR, "--out", out)
    return Step(f"bench-{label}", "moesched", argv)


def server_order(round_index: int) -> list[Step]:
    """The three servers in the order of round ``round_index`` (rotated by one each round)."""
    servers = [vanilla_vllm(), stock_sglang(), patched_sglang()]
    shift = round_index % len(servers)
    return servers[shift:] + servers[:shift]


def recipe() -> list[list[Step]]:
    """All phases in order; a phase's background servers are stopped when the phase ends."""
    setup = [Step("tokenizer", "shell", ("huggingface-cli", "download", MODEL, "tokenizer.json",
                                         "tokenizer_config.json", "--local-dir", TOKENIZER_DIR)),
             Step("dirs", "shell", ("mkdir", "-p", DUMP_DIR))]
    record = [record_server(),
              _http_post("record-start", RECORD_PORT, "/start_expert_distribution_record"),
              bench("record", RECORD_PORT, f"{OUT}/record_traffic.json",
                    max_requests=300),
              _http_post("record-stop", RECORD_PORT, "/stop_expert_distribution_record"),
              _http_post("record-dump", RECORD_PORT, "/dump_expert_distribution_record")]
    place = [Step("pick-rank0", "shell", ("sh", "-c", f"cp {DUMP_DIR}/expert_distribution_recorder_*_0.pt "
                                                        f"{ROUTING_STATS}")),
             Step("place", "moesched", ("moesched", "place", "--stats", ROUTING_STATS,
                                        "--num-gpus", str(GPUS), "--num-redundant", str(REDUNDANT_EXPERTS),
                                        "--objective", "colocation", "--time-limit", "600",
                                        "--out", PLACEMENT, "--report", f"{OUT}/placement_report.json"))]
    phases = [setup, record, place]
    for r in range(ROUNDS):
        for server in server_order(r):
            phases.append([server, bench(server.name, server.port or 0, f"{OUT}/round{r}_{server.name}.json")])
    runs = [f"{OUT}/round{r}_{s.name}.json" for r in range(ROUNDS) for s in server_order(r)]
    phases.append([Step("report", "shell", ("python", "-m", "experiments.report", *runs, "--baseline", "vllm",
                                            "--markdown", f"{OUT}/comparison.md", "--plots", OUT))])
    return phases


def all_steps() -> list[Step]:
    """Every step of :func:`recipe`, flattened, in order."""
    return [step for phase in recipe() for step in phase]


def shell_line(step: Step, prefix: str = "") -> str:
    """One step as a bash command line: environment assignments, ``prefix`` (e.g. setsid), argv."""
    env = " ".join(f"{key}={shlex.quote(value)}" for key, value in step.env)
    return " ".join(part for part in (env, prefix, shlex.join(step.argv)) if part)


def shell_script() -> str:
    """The whole recipe as a bash script: background servers are health-polled, then stopped."""
    lines = ["#!/usr/bin/env bash", "# generated by `python -m experiments.gpu_recipe`; see docs/gpu_recipe.md",
             "set -euo pipefail", f"mkdir -p {OUT}/logs", "",
             "wait_ready() {  # PORT PID: poll /health until 200; fail if the server died",
             '  until curl -sf "http://127.0.0.1:$1/health" >/dev/null; do',
             '    kill -0 "$2" 2>/dev/null || { echo "server on port $1 died" >&2; exit 1; }',
             "    sleep 10", "  done", "}",
             "stop_server() {  # PID: SIGTERM its process group, wait for it", '  kill -- "-$1" 2>/dev/null || true',
             '  wait "$1" 2>/dev/null || true', "}", ""]
    for phase in recipe():
        started: list[str] = []
        for step in phase:
            lines.append(f"# {step.name}")
            if step.background:
                var = f"PID_{step.name.replace('-', '_').upper()}"
                lines.append(f"{shell_line(step, 'setsid')} > {OUT}/logs/{step.name}.log 2>&1 &")
                lines += [f"{var}=$!", f"wait_ready {step.port} ${var}"]
                started.append(var)
            elif step.argv[:2] == ("moesched", "bench"):  # exit 1: some requests failed (recorded)
                lines.append(f"{shell_line(step)} || [ $? -eq 1 ]")
            else:
                lines.append(shell_line(step))
        lines += [f"stop_server ${var}" for var in started]
        lines.append("")
    return "\n".join(lines)
