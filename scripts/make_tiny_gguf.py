#!/usr/bin/env python3
"""Write the tiny synthetic llama GGUF used by tests (see py_engine/testing/tiny_gguf.py)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from py_engine.testing.tiny_gguf import make_tiny_llama_gguf  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="models/tiny-llama.gguf")
    args = ap.parse_args()
    data = make_tiny_llama_gguf(seed=args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"make_tiny_gguf: wrote {args.out} ({len(data)} bytes, seed {args.seed})")


if __name__ == "__main__":
    main()
