"""WGSL kernels, one per file; shipped in the wheel as the package py_engine.shaders."""
