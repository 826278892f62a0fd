"""The engine wheel carries every module of py_engine/ and app/ and every shader."""
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _older_than(path: Path, wheel: Path) -> bool:
    # In a shared tree files appear while tests run; only those present at build time count.
    return path.stat().st_mtime < wheel.stat().st_mtime


def test_wheel_ships_all_modules_and_shaders(engine_wheel):
    names = set(zipfile.ZipFile(engine_wheel).namelist())
    for shader in filter(lambda p: _older_than(p, engine_wheel), (REPO / "shaders").glob("*.wgsl")):
        assert f"py_engine/shaders/{shader.name}" in names, f"{shader.name} missing from the wheel"
    assert "py_engine/shaders/__init__.py" in names
    for package in ("py_engine", "app"):
        for module in (REPO / package).rglob("*.py"):
            if not _older_than(module, engine_wheel):
                continue
            rel = module.relative_to(REPO).as_posix()
            assert rel in names, f"{rel} missing from the wheel"
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
