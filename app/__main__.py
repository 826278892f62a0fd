"""Command line: `python -m app serve|generate|chat` (see --help of each)."""
from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve web/ and the engine wheel over HTTP")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve_cmd.add_argument("--quiet", action="store_true", help="do not log each request")
    from . import cli

    gen_cmd = commands.add_parser("generate", help="complete a prompt on the native GPU backend")
    cli.add_arguments(gen_cmd)
    gen_cmd.add_argument("--prompt", required=True)
    chat_cmd = commands.add_parser("chat", help="interactive chat on the native GPU backend")
    cli.add_arguments(chat_cmd)
    chat_cmd.add_argument("--system", default="", help="system prompt")
    from . import bench

    bench_cmd = commands.add_parser("bench", help="speed on the native GPU backend, as JSON")
    bench.add_arguments(bench_cmd)
    from . import profile_ops

    profile_cmd = commands.add_parser("profile", help="GPU time per op kind for one decode step (native)")
    profile_ops.add_arguments(profile_cmd)
    args = parser.parse_args(argv)
    if args.command == "profile":
        profile_ops.run(args)
    if args.command == "bench":
        bench.run(args)
    if args.command in ("generate", "chat"):
        cli.run(args)
    if args.command == "serve":
        from .serve import serve

        serve(args.host, args.port, quiet=args.quiet)


if __name__ == "__main__":
    main()
