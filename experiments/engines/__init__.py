"""Start real CPU engine servers (vanilla vLLM, stock or patched SGLang) for experiments and tests.

Standard library only: importable without torch, vLLM or SGLang (they run in their own venvs,
built by ``make engines``). Library use::

    from experiments.engines import EngineServer, ServerConfig, pick_free_port
    with EngineServer(ServerConfig("sglang", pick_free_port(), extra_args=("--dp-size", "2"),
                                   extra_env={"SGLANG_CPU_OMP_THREADS_BIND": "0|1"})) as server:
        ...  # server.base_url answers the OpenAI API

Command line: ``python -m experiments.engines start|stop|status`` (see ``--help``).
"""

from experiments.engines.commands import DEFAULT_MODEL, ENGINE_KINDS, ServerConfig, build_command
from experiments.engines.errors import EngineError
from experiments.engines.ports import pick_free_port
from experiments.engines.server import EngineServer

__all__ = ["DEFAULT_MODEL", "ENGINE_KINDS", "EngineError", "EngineServer", "ServerConfig",
           "build_command", "pick_free_port"]
