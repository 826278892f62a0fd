"""Front doors that turn model files (bytes) into data the engine can build from."""
from .gguf import GGUFError, GGUFFile, GGUFTensor, read_gguf, write_gguf

__all__ = ["GGUFError", "GGUFFile", "GGUFTensor", "read_gguf", "write_gguf"]
