"""Comparison runs: workloads, metrics, the benchmark client, the simulator and the `moesched` CLI.

This is the top layer: it may import every other package of the project; nothing imports it.
"""
