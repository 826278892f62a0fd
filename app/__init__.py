"""The application around the engine: the command line (`python -m app serve`) and helpers."""
