"""The one TOML file that holds moesched's knobs inside SGLang (``MOESCHED_CONFIG``).

Pure: reads TOML with :mod:`tomllib` and checks policy names and options against the pure cores'
factories; never imports SGLang. Every section and key is optional; the defaults work::

    [request]                  # ordering of each scheduler's waiting queue
    enabled = true
    policy = "sjf-aging"       # a request_sched.policies name
    prefix_match_max = 128     # waiting requests prefix-matched per scheduling pass (0: none)
    [request.options]          # keyword options of that policy (create_queue(policy, **options))
    [request.preemption]       # let a waiting request take a running slot (request_sched.preemption;
    enabled = false            #   sjf-aging only; `moesched serve` adds --enable-priority-scheduling)
    size_ratio = 2.0           # from a running request with >= 2x its steps of work left
    max_per_request = 1        # times one request may be preempted
    overdue = true             # from any running request once it waited past the policy's max_wait_s

    [dispatch]                 # choice of data-parallel rank (needs --load-balance-method total_tokens)
    enabled = true
    policy = "scored"          # an engine_dispatch.factory name
    block_tokens = 64          # tokens per hashed prompt block (given to "scored" as block_tokens)
    [dispatch.options]         # keyword options of that dispatcher (weights, thresholds, ...)

    [budget]                   # SLO-aware prefill token budget per scheduling pass (off by default)
    enabled = false
    tpot_slo_ms = 50.0         # the step model's predicted step time stays <= this
    step_model = "qwen3-30b-a3b-h100"   # perf_model preset or `moesched calibrate` file (the hardware!),
                               # or "refit": this scheduler's online model of [refit] (learns the hardware)
    min_tokens = 256           # smallest budget while requests wait (prefill never starves)

    [headroom]                 # SGLang's admission headroom for future output tokens (off by default)
    enabled = false            # learn CLIP_MAX_NEW_TOKENS from finished requests (request_sched.headroom)
    quantile = 0.95            # of the last `window` outputs; warmup = 64, floor_tokens = 64,
    window = 1024              #   ceiling_tokens = 4096 (SGLang's constant) are the other keys

    [dp_controller]            # SGLang's data-parallel controller process (with --dp-size > 1)
    block_when_idle = true     # wait on its socket instead of spinning a core at 100% (stock)
    late_binding = false       # hold requests while their rank is full; rebalance them (needs [dispatch])
    hold_order = "request"     # release order of held requests: "request" ([request] policy) or "fcfs"
    [dp_controller.hold]       # engine_dispatch.late_binding.HoldParams: max_in_flight = running +
                               #   waiting requests per rank at which it is full, tick_s, step_model
    [dp_controller.rebalance]  # engine_dispatch.rebalance.RebalanceConfig fields

    [experts]                  # (relative paths are relative to this file)
    placement_file = ""        # a `moesched place` JSON; `moesched serve` passes --init-expert-location
    transitions_file = ""      # routing stats with transitions (as `moesched place --stats` reads)
                               # for the online solver; without it --eplb-algorithm moesched = EPLB
    [experts.solver]           # expert_sched.solver.SolverOptions fields (time_limit, ...)

    [refit]                    # online refit of the step model from this scheduler's own steps
    enabled = false
    base_model = ""            # a perf_model preset name or a `moesched calibrate` coefficient file
    log_interval_steps = 200   # one error line (MAPE, scale, drifts) per this many timed steps
    steps_file = ""            # optional JSON-lines file, one row per timed step ("" for none)
    [refit.options]            # perf_model.online.OnlineRefitConfig fields (forgetting, window, ...)

    [launch]                   # SGLang flags `moesched serve` adds when absent
    mixed_chunk = true         # --enable-mixed-chunk: decodes ride along in prefill steps (see below)

    [log]
    first_orderings = 5        # log the first N waiting-queue orderings and dispatch decisions in full
    summary_interval_s = 30.0  # then one summary line per interval (0: never)

Errors are one line naming the file, the key and what was expected (``ValueError``).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine_dispatch.config import DispatchParams, build_table
from engine_dispatch.late_binding import HoldParams, LateBindingConfig
from engine_dispatch.rebalance import RebalanceConfig

#: set to "1" to switch the plugin on in every SGLang process (children inherit it)
ENABLE_ENV = "MOESCHED_ENABLE"
#: path of the TOML file; unset means all defaults
CONFIG_ENV = "MOESCHED_CONFIG"


def _frozen(options: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(options or {}))


@dataclass(frozen=True)
class PreemptionConfig:
    """``[request.preemption]``: :class:`request_sched.preemption.PreemptionRule` settings."""

    enabled: bool = False
    size_ratio: float = 2.0
    max_per_request: int = 1
    overdue: bool = True


@dataclass(frozen=True)
class RequestConfig:
    """``[request]``: which request_sched policy orders SGLang's waiting queue."""

    enabled: bool = True
    policy: str = "sjf-aging"
    prefix_match_max: int = 128
    options: Mapping[str, Any] = field(default_factory=_frozen)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)


@dataclass(frozen=True)
class DispatchConfig:
    """``[dispatch]``: which engine_dispatch dispatcher replaces SGLang's total_tokens method."""

    enabled: bool = True
    policy: str = "scored"
    block_tokens: int = field(default_factory=lambda: DispatchParams().block_tokens)
    options: Mapping[str, Any] = field(default_factory=_frozen)

    def dispatcher_options(self) -> dict[str, Any]:
        """Keyword options for ``create_dispatcher``: ``options``, plus ``block_tokens`` for the
        scored dispatcher, whose prefix index must use the block size the host hashes with."""
        options = dict(self.options)
        if self.policy == "scored":
            options["block_tokens"] = self.block_tokens
        return options


#: ``budget.step_model`` value for "the scheduler's own online-refit model" (``[refit]``)
REFIT_MODEL = "refit"


@dataclass(frozen=True)
class BudgetConfig:
    """``[budget]``: :class:`request_sched.token_budget.SloTokenBudget` on SGLang's prefill limits.

    ``step_model``: a preset or coefficient file describing the serving hardware, or
    :data:`REFIT_MODEL` to price steps with the scheduler's online model of ``[refit]``, which
    starts from ``refit.base_model`` and follows the engine's own step times."""

    enabled: bool = False
    tpot_slo_ms: float = 50.0
    step_model: str = "qwen3-30b-a3b-h100"
    min_tokens: int = 256


@dataclass(frozen=True)
class HeadroomConfig:
    """``[headroom]``: :class:`request_sched.headroom.LearntHeadroom` as SGLang's admission clip."""

    enabled: bool = False
    quantile: float = 0.95
    window: int = 1024
    warmup: int = 64
    floor_tokens: int = 64
    ceiling_tokens: int = 4096

    def headroom_options(self) -> dict[str, Any]:
        """Keyword options of ``LearntHeadroom`` (every field but ``enabled``)."""
        return {key: value for key, value in asdict(self).items() if key != "enabled"}


@dataclass(frozen=True)
class DpControllerConfig:
    """``[dp_controller]``: how SGLang's DP controller process waits for and holds requests.

    ``block_when_idle``: replace its busy-polling receive loop with a blocking one
    (:mod:`sglang_patches.hooks.dp_idle`); ``false`` keeps stock SGLang's spinning loop.
    ``late_binding``: hold each request in the controller while the rank the dispatcher chose is
    full and rebalance held requests between ranks (:mod:`sglang_patches.hooks.dp_late_binding`;
    its loop also waits blocking); ``hold_order``: held requests are released in the order of the
    ``[request]`` policy (``"request"``, with its options) or FCFS (``"fcfs"``); ``hold`` and
    ``rebalance`` are the ``[hold]`` and ``[rebalance]`` tables of the router's late-binding file
    (``configs/late_binding.toml``).
    """

    block_when_idle: bool = True
    late_binding: bool = False
    hold_order: str = "request"
    hold: Mapping[str, Any] = field(default_factory=_frozen)
    rebalance: Mapping[str, Any] = field(default_factory=_frozen)

    def late_binding_config(self) -> LateBindingConfig:
        """The ``hold`` and ``rebalance`` tables as a validated :class:`LateBindingConfig`
        (ValueError naming ``dp_controller.<table>.<key>``)."""
        try:
            return LateBindingConfig(build_table(HoldParams, dict(self.hold), "hold"),
                                     build_table(RebalanceConfig, dict(self.rebalance), "rebalance"))
        except ValueError as exc:  # "hold.<key>: ..." / "rebalance.<key>: ..."
            raise ValueError(f"dp_controller.{exc}") from None


@dataclass(frozen=True)
class ExpertsConfig:
    """``[experts]``: the offline placement file and the online solver's inputs."""

    placement_file: str = ""
    transitions_file: str = ""
    solver: Mapping[str, Any] = field(default_factory=_frozen)


@dataclass(frozen=True)
class RefitConfig:
    """``[refit]``: time each scheduler step and keep an online step model current (off by default)."""

    enabled: bool = False
    base_model: str = ""
    log_interval_steps: int = 200
    steps_file: str = ""
    options: Mapping[str, Any] = field(default_factory=_frozen)

    def refit_options(self) -> dict[str, Any]:
        """Keyword options of ``OnlineRefitConfig`` (TOML arrays become tuples)."""
        return {key: tuple(value) if isinstance(value, list) else value
                for key, value in self.options.items()}


@dataclass(frozen=True)
class LaunchConfig:
    """``[launch]``: stock SGLang flags that ``moesched serve`` adds unless the command line has them.

    ``mixed_chunk``: ``--enable-mixed-chunk`` (off in stock SGLang 0.5.23): without it every
    prefill step stalls all running decodes. In the simulator (SGLang step forming, Azure traces,
    docs/comparisons.md) it raises stock SGLang's FCFS capacity by 20% (conv) to 44% (code) and
    is what lets the request layer's gains show; ``false`` keeps SGLang's default.
    """

    mixed_chunk: bool = True


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: how much of the plugin's decisions go to the server log."""

    first_orderings: int = 5
    summary_interval_s: float = 30.0


@dataclass(frozen=True)
class MoeschedConfig:
    """The whole file; ``source`` names it in messages ("<defaults>" without a file)."""

    request: RequestConfig = field(default_factory=RequestConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    headroom: HeadroomConfig = field(default_factory=HeadroomConfig)
    dp_controller: DpControllerConfig = field(default_factory=DpControllerConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    refit: RefitConfig = field(default_factory=RefitConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "<defaults>"


# --- value checks: each returns the value or raises ValueError("expected ...") ----------------

def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a file path string (\"\" for none)")
    return value


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError("expected a number of seconds >= 0")
    return float(value)


def _table(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a table of options")
    return _frozen(value)


def _ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1:
        raise ValueError("expected a number > 1")
    return float(value)


def _positive_ms(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not value > 0:
        raise ValueError("expected a number of milliseconds > 0")
    return float(value)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError("expected a number in (0, 1]")
    return float(value)


#: ``dp_controller.hold_order`` values
HOLD_ORDERS = ("request", "fcfs")


def _hold_order(value: Any) -> str:
    if value not in HOLD_ORDERS:
        raise ValueError(f"expected one of {', '.join(repr(o) for o in HOLD_ORDERS)}")
    return value


def _preemption(value: Any) -> PreemptionConfig:
    if not isinstance(value, dict):
        raise ValueError("expected a table (enabled, size_ratio, max_per_request, overdue)")
    checks = {"enabled": _bool, "size_ratio": _ratio, "max_per_request": _count, "overdue": _bool}
    values = {}
    for key, item in value.items():
        if key not in checks:
            raise ValueError(f"unknown key {key!r}; expected one of {', '.join(checks)}")
        try:
            values[key] = checks[key](item)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return PreemptionConfig(**values)


#: section -> (dataclass, key -> check)
_SCHEMA: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "request": (RequestConfig, {"enabled": _bool, "policy": _name, "prefix_match_max": _count,
                                "options": _table, "preemption": _preemption}),
    "dispatch": (DispatchConfig, {"enabled": _bool, "policy": _name, "block_tokens": _positive,
                                  "options": _table}),
    "budget": (BudgetConfig, {"enabled": _bool, "tpot_slo_ms": _positive_ms, "step_model": _name,
                              "min_tokens": _count}),
    "headroom": (HeadroomConfig, {"enabled": _bool, "quantile": _fraction, "window": _positive,
                                  "warmup": _positive, "floor_tokens": _positive,
                                  "ceiling_tokens": _positive}),
    "dp_controller": (DpControllerConfig, {"block_when_idle": _bool, "late_binding": _bool,
                                           "hold_order": _hold_order, "hold": _table,
                                           "rebalance": _table}),
    "experts": (ExpertsConfig, {"placement_file": _path, "transitions_file": _path,
                                "solver": _table}),
    "refit": (RefitConfig, {"enabled": _bool, "base_model": _path, "log_interval_steps": _positive,
                            "steps_file": _path, "options": _table}),
    "launch": (LaunchConfig, {"mixed_chunk": _bool}),
    "log": (LogConfig, {"first_orderings": _count, "summary_interval_s": _seconds}),
}


def _parse_section(source: str, section: str, raw: Any) -> Any:
    cls, checks = _SCHEMA[section]
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: [{section}] must be a table")
    values = {}
    for key, value in raw.items():
        check = checks.get(key)
        if check is None:
            raise ValueError(f"{source}: unknown key '{section}.{key}'; expected one of "
                             f"{', '.join(checks)}")
        try:
            values[key] = check(value)
        except ValueError as exc:
            raise ValueError(f"{source}: {section}.{key}: {exc}, got {value!r}") from None
    return cls(**values)


def _check_against_cores(config: MoeschedConfig) -> None:
    """Build each configured policy once so bad names/options fail now, not in a scheduler."""
    source = config.source
    if config.request.enabled:
        from request_sched.policies import create_queue

        try:
            queue = create_queue(config.request.policy, **config.request.options)
        except ValueError as exc:
            raise ValueError(f"{source}: request.policy/options: {exc}") from None
        if config.request.preemption.enabled and not hasattr(queue, "job_size"):
            raise ValueError(f"{source}: request.preemption.enabled needs a policy with a job-size "
                             f"predictor (sjf-aging), got request.policy "
                             f"{config.request.policy!r}")
    if config.dispatch.enabled:
        from engine_dispatch.factory import create_dispatcher

        try:
            create_dispatcher(config.dispatch.policy, 1, **config.dispatch.dispatcher_options())
        except ValueError as exc:
            raise ValueError(f"{source}: dispatch.policy/options: {exc}") from None
    from expert_sched.solver import SolverOptions

    try:
        SolverOptions(**config.experts.solver)
    except TypeError as exc:
        raise ValueError(f"{source}: experts.solver: {exc}") from None
    for key in ("placement_file", "transitions_file"):
        path = getattr(config.experts, key)
        if path and not Path(path).is_file():
            raise ValueError(f"{source}: experts.{key}: expected an existing file, got {path!r}")
    if config.refit.enabled:
        _check_refit(config.refit, source)
    if config.dp_controller.late_binding:
        _check_late_binding(config, source)
    if config.budget.enabled and config.budget.step_model == REFIT_MODEL:
        if not config.refit.enabled:
            raise ValueError(f"{source}: budget.step_model: \"{REFIT_MODEL}\" prices steps with the online model of "
                             "[refit]; expected [refit] enabled = true")
    elif config.budget.enabled:
        from perf_model.model_file import resolve_model

        try:
            resolve_model(config.budget.step_model)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{source}: budget.step_model: {exc}") from None
    from request_sched.headroom import LearntHeadroom

    try:
        LearntHeadroom(**config.headroom.headroom_options())
    except ValueError as exc:
        raise ValueError(f"{source}: headroom: {exc}") from None


def _check_late_binding(config: MoeschedConfig, source: str) -> None:
    """Holding needs the plugin's dispatcher (it books held requests); tables and step model load."""
    if not config.dispatch.enabled:
        raise ValueError(f"{source}: dp_controller.late_binding: holds the requests the plugin's "
                         "dispatcher places; expected [dispatch] enabled = true")
    if config.dp_controller.hold_order == "request" and not config.request.enabled:
        raise ValueError(f"{source}: dp_controller.hold_order: \"request\" orders held requests by the "
                         "[request] policy, which is off; expected \"fcfs\" or [request] enabled = true")
    from perf_model.model_file import resolve_model

    try:
        late = config.dp_controller.late_binding_config()
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    try:
        resolve_model(late.hold.step_model)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{source}: dp_controller.hold.step_model: {exc}") from None


def _check_refit(refit: RefitConfig, source: str) -> None:
    """The base model must load and the options must make a valid ``OnlineRefitConfig``."""
    from perf_model.model_file import resolve_model
    from perf_model.online import OnlineRefitConfig

    if not refit.base_model:
        raise ValueError(f"{source}: refit.base_model: expected a preset name or a coefficient "
                         "file when refit.enabled = true")
    try:
        resolve_model(refit.base_model)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{source}: refit.base_model: {exc}") from None
    try:
        OnlineRefitConfig(**refit.refit_options())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: refit.options: {exc}") from None


def parse_config(text: str, source: str = "<string>") -> MoeschedConfig:
    """Parse and validate TOML ``text``; ``source`` names it in error messages.

    Relative ``experts.*_file`` and ``refit.steps_file`` paths are resolved against the directory
    of ``source`` when ``source`` is a file path, and so are ``refit.base_model``,
    ``budget.step_model`` and ``dp_controller.hold.step_model`` when such a file exists there
    (otherwise it stays a preset name or a path from the working directory).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML ({exc})") from None
    sections = {}
    for section, value in raw.items():
        if section not in _SCHEMA:
            raise ValueError(f"{source}: unknown section [{section}]; expected one of "
                             f"{', '.join(f'[{name}]' for name in _SCHEMA)}")
        sections[section] = _parse_section(source, section, value)
    config = MoeschedConfig(**sections, source=source)
    if os.path.isfile(source):
        base = Path(source).resolve().parent
        resolved = {key: str(base / path) for key in ("placement_file", "transitions_file")
                    if (path := getattr(config.experts, key)) and not os.path.isabs(path)}
        config = replace(config, experts=replace(config.experts, **resolved))
        refit_paths = {key: str(base / path) for key in ("base_model", "steps_file")
                       if (path := getattr(config.refit, key)) and not os.path.isabs(path)
                       and (key == "steps_file" or (base / path).exists())}
        config = replace(config, refit=replace(config.refit, **refit_paths))
        model = config.budget.step_model
        if not os.path.isabs(model) and (base / model).exists():
            config = replace(config, budget=replace(config.budget, step_model=str(base / model)))
        hold = config.dp_controller.hold
        model = hold.get("step_model")
        if isinstance(model, str) and model and not os.path.isabs(model) and (base / model).exists():
            config = replace(config, dp_controller=replace(
                config.dp_controller, hold=_frozen({**hold, "step_model": str(base / model)})))
    _check_against_cores(config)
    return config


def load_config(path: str | os.PathLike[str] | None) -> MoeschedConfig:
    """Read the config file at ``path``, or return validated defaults when ``path`` is None/empty."""
    if not path:
        config = MoeschedConfig()
        _check_against_cores(config)
        return config
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the moesched config ({exc.strerror or exc})") from None
    return parse_config(text, source=str(path))


def config_from_env(environ: Mapping[str, str] = os.environ) -> MoeschedConfig | None:
    """The config the plugin runs with: None unless ``MOESCHED_ENABLE=1``."""
    if environ.get(ENABLE_ENV, "") != "1":
        return None
    return load_config(environ.get(CONFIG_ENV) or None)
