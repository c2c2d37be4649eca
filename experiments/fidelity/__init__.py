"""Simulator fidelity against real CPU engines: calibrating the step model from a real server's
measurements (:mod:`.calibration`) and comparing its replays with simulated ones (:mod:`.replay`).
The measuring script is ``experiments/benchmarks/sim_fidelity.py``."""
