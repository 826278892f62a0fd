"""Command line: `python -m app serve [--host 127.0.0.1] [--port 8000]`."""
from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve web/ and the engine wheel over HTTP")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve_cmd.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if args.command == "serve":
        from .serve import serve

        serve(args.host, args.port, quiet=args.quiet)


if __name__ == "__main__":
    main()
