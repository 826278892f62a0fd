"""One module per op family; importing this package registers them all."""
from . import binary, prepack, rms_norm, unary, view_copy  # noqa: F401
