"""Package discovery only; all metadata lives in pyproject.toml.

Every folder under py_engine/ and app/ is a package (with or without __init__.py), and the
top-level shaders/ folder becomes py_engine.shaders (mapped in pyproject.toml).
"""
from setuptools import find_namespace_packages, setup

packages = find_namespace_packages(
    include=["py_engine", "py_engine.*", "app", "app.*"],
    exclude=["*.__pycache__", "*.__pycache__.*"],
)
setup(packages=sorted(set(packages) | {"py_engine.shaders"}))
