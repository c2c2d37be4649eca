"""The one error type of ``experiments.engines``."""


class EngineError(RuntimeError):
    """A server could not be found, started, reached or stopped; the message says why in one line
    (followed, for a server that died, by the last lines of its log)."""
