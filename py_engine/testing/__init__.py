"""Test support shipped with the engine, so CPython and the browser run the very same cases."""
