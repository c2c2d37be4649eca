"""Discrete-event cluster simulator: N continuous-batching engines behind a dispatcher.

- :mod:`experiments.sim.cluster`: the event loop (:func:`~experiments.sim.cluster.simulate`).
- :mod:`experiments.sim.engine`: one engine (chunked prefill, KV cache, prefix cache, preemption;
  vLLM V1 or SGLang 0.5.23 step forming).
- :mod:`experiments.sim.decode_reservation`: SGLang's admission headroom for future decode tokens.
- :mod:`experiments.sim.prefix_cache`: radix trie over prompt block ids with LRU eviction.
- :mod:`experiments.sim.results`: run records and summary in the ``moesched bench`` schema.
- :mod:`experiments.sim.cli` / :mod:`experiments.sim.calibrate_cli`: ``moesched simulate`` / ``calibrate``.
"""
