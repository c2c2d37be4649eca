"""Request layer: which waiting request an engine runs next.

Pure core (no SGLang, no torch). Hosts (the simulator, the SGLang plugin) describe each waiting
request as a :class:`~request_sched.types.WaitingRequest` and ask a
:class:`~request_sched.queue.RequestQueue` for the admission order.
"""
