from .errors import OpError, StepError
from .graph import Graph

__all__ = ["Graph", "OpError", "StepError"]
