"""Reports of run results: Markdown tables with ratios against a baseline (``report.markdown``) and
PNG plots (``report.plots``, imports matplotlib). Both read :class:`experiments.metrics.RunResult`.
"""
