"""Simulated comparison runs: the request layer alone (issue 4) and the whole stack (issue 7).

``python -m experiments.comparisons.request_layer`` and ``python -m experiments.comparisons.full_stack``
each find the capacity of their cluster on every trace (:mod:`.capacity`), replay the trace at a
fraction of it under every configuration (:mod:`.stack`), and write run JSON, Markdown and plots
(:mod:`.report`). See docs/comparisons.md.
"""
