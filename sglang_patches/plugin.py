"""SGLang plugin entry point (``[project.entry-points."sglang.srt.plugins"] moesched``).

SGLang 0.5.23 calls :func:`load` early in every process it starts (the launcher, each scheduler,
the data-parallel controller, the detokenizer; ``srt/plugins/__init__.py``), then applies the
registered hooks. :func:`load` does nothing unless ``MOESCHED_ENABLE=1``: with the package
installed, a plain ``python -m sglang.launch_server`` stays stock SGLang. Spawned processes
inherit the environment, so ``moesched serve`` (which sets it) switches every process on.

When on, it reads ``MOESCHED_CONFIG`` (:mod:`sglang_patches.config`) and registers, per enabled
section:

* ``[request]``: :mod:`sglang_patches.hooks.request_order` (waiting-queue order, predictor feed),
  and with ``[request.preemption] enabled``, :mod:`sglang_patches.hooks.preemption` (which running
  request a waiting one preempts, under ``--enable-priority-scheduling``);
* ``[dispatch]``: :mod:`sglang_patches.hooks.dp_dispatch` (DP rank choice under
  ``--load-balance-method total_tokens``);
* ``[budget]`` (off by default): :mod:`sglang_patches.hooks.token_budget` (each scheduling pass's
  prefill token limits capped at the SLO-aware budget of its decode batch; with ``step_model =
  "refit"`` priced by the same online model the ``[refit]`` step timing keeps current);
* ``[headroom]`` (off by default): :mod:`sglang_patches.hooks.headroom` (SGLang's admission clip
  on future output tokens learnt from finished requests);
* ``[dp_controller] block_when_idle`` (on by default): :mod:`sglang_patches.hooks.dp_idle` (the DP
  controller blocks on its socket instead of spinning a core); ``late_binding`` (off by default,
  with ``[dispatch]``): :mod:`sglang_patches.hooks.dp_late_binding` (the controller holds requests
  while their rank is full and rebalances them; its loop replaces dp_idle's and also blocks);
* ``[refit]`` (off by default): :mod:`sglang_patches.hooks.step_timing` (each scheduler times its
  steps and refits an online step model, logging its error);
* always: :mod:`sglang_patches.hooks.eplb` (the name ``--eplb-algorithm moesched``; inert unless
  chosen).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.late_binding import LateBindingConfig
from perf_model.batch import BatchShape, MoeFactors
from sglang_patches.config import REFIT_MODEL, MoeschedConfig, PreemptionConfig, RefitConfig, config_from_env
from sglang_patches.decision_log import DecisionLog

if TYPE_CHECKING:  # imports SGLang: only in the DP controller process
    from sglang_patches.hooks.dp_late_binding import ControllerHold


class ProcessStepModel:
    """This process's online step model (``[refit]``), built on first use and shared: the step
    timing hook feeds it every timed step, and the token budget (``step_model = "refit"``) prices
    steps with it. Only scheduler processes ever build it (the hooks run there)."""

    def __init__(self, refit: RefitConfig) -> None:
        self.refit = refit
        self._model: Any = None

    def get(self) -> Any:
        """The :class:`~perf_model.online.OnlineStepModel` (built from ``refit.base_model`` once)."""
        if self._model is None:
            from perf_model.model_file import resolve_model
            from perf_model.online import OnlineRefitConfig, OnlineStepModel

            self._model = OnlineStepModel(resolve_model(self.refit.base_model),
                                          OnlineRefitConfig(**self.refit.refit_options()))
        return self._model

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        """The online model's current prediction for ``batch`` (seconds)."""
        return self.get().step_seconds(batch, moe)


def _request_hooks(config: MoeschedConfig) -> None:
    from request_sched.policies import create_queue
    from sglang_patches.hooks.request_order import RequestOrderHooks, WaitingQueueOrderer

    request = config.request

    def make_orderer() -> WaitingQueueOrderer:
        return WaitingQueueOrderer(create_queue(request.policy, **request.options), request.policy,
                                   request.prefix_match_max,
                                   DecisionLog(config.log.first_orderings,
                                               config.log.summary_interval_s))

    hooks = RequestOrderHooks(make_orderer)
    hooks.register()
    if request.preemption.enabled:
        _preemption_hook(hooks, request.preemption, config.log.summary_interval_s)


def _preemption_hook(request_hooks: Any, preemption: PreemptionConfig, summary_interval_s: float) -> None:
    from request_sched.preemption import PreemptionRule
    from sglang_patches.hooks.preemption import PreemptionHook

    def make_rule(queue: Any) -> PreemptionRule:  # an sjf-aging queue (config checks it)
        return PreemptionRule(queue.job_size.predictor, preemption.size_ratio, queue.max_wait_s,
                              preemption.max_per_request, preemption.overdue)

    PreemptionHook(request_hooks, make_rule, DecisionLog(0, summary_interval_s)).register()


def _dispatch_hooks(config: MoeschedConfig) -> None:
    from engine_dispatch.factory import create_dispatcher
    from sglang_patches.hooks.dp_dispatch import DpDispatchHook

    dispatch = config.dispatch
    options = dispatch.dispatcher_options()
    late = config.dp_controller.late_binding_config() if config.dp_controller.late_binding else None
    make_hold = None if late is None else _make_hold(config, late)
    hook = DpDispatchHook(
        lambda num_engines: create_dispatcher(dispatch.policy, num_engines, **options),
        dispatch.policy, dispatch.block_tokens,
        lambda: DecisionLog(config.log.first_orderings, config.log.summary_interval_s), make_hold)
    hook.register()
    if late is not None:
        from sglang_patches.hooks.dp_late_binding import LateBindingLoop

        LateBindingLoop(hook.tick, late.hold.tick_s).register()


def _make_hold(config: MoeschedConfig,
               late: LateBindingConfig) -> Callable[[int, Dispatcher], ControllerHold]:
    """Builder of a DP controller's late-binding hold for ``num_ranks`` ranks and its dispatcher."""
    from engine_dispatch.rebalance import SelectiveRebalancer
    from perf_model.model_file import resolve_model
    from request_sched.policies import create_queue
    from request_sched.policies.fcfs import FcfsQueue
    from request_sched.queue import RequestQueue
    from sglang_patches.hooks.dp_late_binding import ControllerHold

    request = config.request

    def make_queue() -> RequestQueue:  # the ranks' own order, unless hold_order = "fcfs"
        if config.dp_controller.hold_order == "fcfs":
            return FcfsQueue()
        return create_queue(request.policy, **request.options)

    def make_hold(num_ranks: int, dispatcher: Dispatcher) -> ControllerHold:  # only the DP controller
        return ControllerHold(late, SelectiveRebalancer(late.rebalance, resolve_model(late.hold.step_model)),
                              num_ranks, dispatcher, make_queue)

    return make_hold


def _refit_hooks(config: MoeschedConfig, online: ProcessStepModel) -> None:
    from sglang_patches.hooks.step_timing import StepRecorder, StepTimingHooks

    refit = config.refit

    def make_recorder() -> StepRecorder:  # only scheduler processes get here, on their first batch
        from sglang.srt.runtime_context import get_parallel
        from sglang_patches.step_metrics import step_model_gauges

        steps_file = open(refit.steps_file, "a", encoding="utf-8") if refit.steps_file else None
        parallel = get_parallel()  # this scheduler's ranks, as SGLang labels its own metrics
        labels = {"dp_rank": str(parallel.dp_rank or 0), "tp_rank": str(parallel.tp_rank)}
        return StepRecorder(online.get(), refit.log_interval_steps, steps_file,
                            gauges=step_model_gauges(labels))

    StepTimingHooks(make_recorder).register()


def _budget_hook(config: MoeschedConfig, online: ProcessStepModel) -> None:
    from perf_model.model_file import resolve_model
    from request_sched.token_budget import SloTokenBudget
    from sglang_patches.hooks.token_budget import TokenBudgetHook

    budget = config.budget
    model = online if budget.step_model == REFIT_MODEL else resolve_model(budget.step_model)
    rule = SloTokenBudget(model, budget.tpot_slo_ms / 1e3,
                          max_budget=65536, min_budget=budget.min_tokens)  # SGLang's own limits cap it too
    TokenBudgetHook(rule, DecisionLog(config.log.first_orderings, config.log.summary_interval_s)).register()


def _headroom_hook(config: MoeschedConfig) -> None:
    from request_sched.headroom import LearntHeadroom
    from sglang_patches.hooks.headroom import HeadroomHook

    HeadroomHook(LearntHeadroom(**config.headroom.headroom_options())).register()


def _eplb_hooks(config: MoeschedConfig) -> None:
    from expert_sched.sglang_algorithm import rebalance
    from sglang_patches.hooks.eplb import EplbHooks

    experts = config.experts

    def solver_inputs() -> dict[str, Any]:  # read lazily: only a process that rebalances pays
        from expert_sched.solver import SolverOptions
        from expert_sched.stats import load_stats

        transitions = (load_stats(experts.transitions_file).transitions
                       if experts.transitions_file else None)
        return {"transitions": transitions, "options": SolverOptions(**experts.solver)}

    EplbHooks(rebalance, solver_inputs).register()


def _dp_controller_mode(config: MoeschedConfig) -> str:
    if config.dp_controller.late_binding:
        hold = config.dp_controller.late_binding_config().hold
        return f"late-binding(max_in_flight={hold.max_in_flight}, order={config.dp_controller.hold_order})"
    return "blocking" if config.dp_controller.block_when_idle else "spinning"


def load() -> None:
    """Entry point: register moesched's hooks if ``MOESCHED_ENABLE=1``, else do nothing."""
    config = config_from_env()
    if config is None:
        return
    online = ProcessStepModel(config.refit)  # built only if a scheduler's hook asks for it
    if config.request.enabled:
        _request_hooks(config)
    if config.dispatch.enabled:
        _dispatch_hooks(config)
    if config.budget.enabled:
        _budget_hook(config, online)
    if config.headroom.enabled:
        _headroom_hook(config)
    if config.dp_controller.block_when_idle and not config.dp_controller.late_binding:
        from sglang_patches.hooks import dp_idle  # late binding's own loop also blocks

        dp_idle.register()
    if config.refit.enabled:
        _refit_hooks(config, online)
    _eplb_hooks(config)
    # SGLang loads plugins before it configures logging, so INFO records from here would be
    # dropped: this one line goes straight to stderr (the server log).
    print(f"moesched plugin on (pid {os.getpid()}, config {config.source}): "
          f"request={config.request.policy if config.request.enabled else 'off'} "
          f"preemption={'on' if config.request.enabled and config.request.preemption.enabled else 'off'} "
          f"dispatch={config.dispatch.policy if config.dispatch.enabled else 'off'} "
          f"refit={'on' if config.refit.enabled else 'off'} "
          f"budget={f'{config.budget.tpot_slo_ms:g}ms ({config.budget.step_model})' if config.budget.enabled else 'off'} "
          f"headroom={'learnt' if config.headroom.enabled else 'stock'} "
          f"dp_controller={_dp_controller_mode(config)} "
          "eplb=--eplb-algorithm moesched available", file=sys.stderr, flush=True)
