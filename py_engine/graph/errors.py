"""Errors raised while building or stepping a graph."""


class OpError(ValueError):
    """An op call that cannot run: the message starts with the op's name."""


class StepError(ValueError):
    """Inputs to a step that do not fit the graph; the graph stays usable."""
