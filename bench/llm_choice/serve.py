"""Start an OpenAI-compatible llama.cpp server (in-process, via xllamacpp) for one GGUF.

Usage:
    python serve.py --model PATH.gguf --port 18080 [--ctx 4096] [--parallel 1] [--threads N]

Facts checked with xllamacpp==2026.10.11549:
- ``xllamacpp.Server(params)`` loads the model, binds, starts the HTTP threads and then
  *returns* (it does not block). The server lives as long as the ``Server`` object and the
  process do, so this script parks the main thread until SIGTERM/SIGINT.
- Routes: ``GET /health`` (``{"status":"ok"}`` once loaded; the constructor only returns
  after loading, so /health is ready as soon as ``Server()`` returns), ``GET /v1/models``,
  ``POST /v1/chat/completions`` (non-streaming and SSE streaming; with
  ``stream_options.include_usage`` the last chunk carries ``usage`` and llama.cpp
  ``timings``), ``response_format={"type":"json_schema",...}`` is compiled to a grammar
  and enforced. The ``model`` field of a request is ignored (any name works).
- ``CommonParams()`` defaults that matter: ``use_jinja=True`` (needed for the GGUF's own
  chat template; keep it), ``hostnames=['127.0.0.1']``, ``port=0``, ``n_ctx=0`` (= the
  model's training context: set it, or a 32k-context Qwen allocates a big KV cache),
  ``n_parallel=1``, threads ``-1`` (= all cores).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time


def build_params(
    model: str,
    port: int,
    host: str = "127.0.0.1",
    ctx: int = 4096,
    parallel: int = 1,
    threads: int = -1,
    no_repack: bool = False,
):
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.hostnames = [host]
    params.port = port
    params.n_ctx = ctx  # total KV size; split across n_parallel slots
    params.n_parallel = parallel
    params.use_jinja = True  # default already; the GGUF chat template is used
    params.warmup = True
    if no_repack:
        # skip the CPU "extra buffer" weight repacking (saves a second copy of the
        # weights in RAM, usually at some decode-speed cost)
        params.no_extra_bufts = True
    if threads > 0:
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="path to a .gguf file")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--threads", type=int, default=-1)
    ap.add_argument("--no-repack", action="store_true", help="set no_extra_bufts")
    args = ap.parse_args(argv)

    import xllamacpp

    t0 = time.monotonic()
    server = xllamacpp.Server(
        build_params(
            args.model, args.port, args.host, args.ctx, args.parallel, args.threads, args.no_repack
        )
    )
    print(f"READY {server.listening_address} load_s={time.monotonic() - t0:.2f}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)
    del server  # releases the model / stops the HTTP server
    return 0


if __name__ == "__main__":
    sys.exit(main())
