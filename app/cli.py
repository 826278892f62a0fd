"""`python -m app generate|chat --model FILE`: the engine in a terminal, on the native backend."""
from __future__ import annotations

import asyncio
import sys

DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def add_arguments(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="a llama-family .gguf file")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=None, help="KV cache length (default: model's, capped)")


def _settings(args) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                min_p=args.min_p, repetition_penalty=args.repetition_penalty, seed=args.seed)


async def _load(args):
    from py_engine.engine import Engine

    def progress(stage, **info):
        if stage == "transcode":  # one line, rewritten per tensor
            end = "\n" if info["done"] == info["total"] else ""
            print(f"\r[transcode] {info['done']}/{info['total']} tensors", end=end, file=sys.stderr, flush=True)
        else:
            print(f"[{stage}]", file=sys.stderr, flush=True)

    return await Engine.load(args.model, context=args.context, on_progress=progress)


def _report(engine) -> None:
    s = engine.last_stats
    print(f"\n[{s.prefilled_tokens} prompt tokens at {s.prefill_tokens_per_s:.1f} tok/s, "
          f"{s.generated_tokens} generated at {s.decode_tokens_per_s:.1f} tok/s, {s.finish_reason}]",
          file=sys.stderr, flush=True)


async def generate(args) -> None:
    engine = await _load(args)
    async for piece in engine.generate(args.prompt, **_settings(args)):
        print(piece, end="", flush=True)
    _report(engine)


async def chat(args) -> None:
    engine = await _load(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    print("Type a message; an empty line or Ctrl-D quits; /reset starts a new chat.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            engine.reset()
            continue
        messages.append({"role": "user", "content": line})
        reply = ""
        async for piece in engine.chat(messages, **_settings(args)):
            reply += piece
            print(piece, end="", flush=True)
        messages.append({"role": "assistant", "content": reply})
        _report(engine)


def run(args) -> None:
    asyncio.run(generate(args) if args.command == "generate" else chat(args))
