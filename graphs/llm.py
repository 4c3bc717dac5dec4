"""The LLM factory: always ``ChatOpenAI`` on a configurable base URL.

The embedded default is a real local model: a llama.cpp server (``xllamacpp``) on a packaged
GGUF, started by ``keel serve`` as a child process (``python -m graphs.llm``) and stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from core.db import free_port
from core.errors import Unavailable
from core.settings import LLMSettings, LocalModelSettings
from graphs.openai_stream import StreamingChatOpenAI

log = logging.getLogger(__name__)


_models: dict[tuple[LLMSettings, asyncio.AbstractEventLoop], ChatOpenAI] = {}


def chat_model(llm: LLMSettings) -> BaseChatModel:
    """The chat model for ``llm``: one client per setting and event loop, kept for reuse.

    The client's connection pool belongs to the loop that first used it, so a model is never
    shared between loops (several apps in one process, as in tests); ``close_models`` closes
    the current loop's clients when the app stops.
    """
    key = (llm, asyncio.get_running_loop())
    model = _models.get(key)
    if model is None:
        model = _models[key] = _build(llm)
    return model


async def close_models() -> None:
    """Close the HTTP clients of the models made on the running loop."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _models if k[1] is loop]:
        await _models.pop(key).root_async_client.close()
    while _silent:
        _silent.pop().close()


_silent: list[socket.socket] = []


def silent_endpoint() -> str:
    """A base URL that accepts connections and never answers (``faults.llm: timeout``).

    A listening socket nobody accepts from: the kernel completes the handshake, the request
    sits in its buffer, and the client's own read timeout fires, as with a hung model server.
    """
    if not _silent:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        _silent.append(sock)
    return f"http://127.0.0.1:{_silent[0].getsockname()[1]}/v1"


def _build(llm: LLMSettings) -> ChatOpenAI:
    if not llm.base_url:
        raise Unavailable("llm.base_url is not set: start the local model or set OPENAI_BASE_URL")
    return StreamingChatOpenAI(  # ChatOpenAI with a lean token stream
        base_url=llm.base_url,
        model=llm.model,
        api_key=SecretStr(llm.api_key),
        temperature=llm.temperature,
        max_completion_tokens=llm.max_tokens,
        # An openai.Timeout (unhashable) makes langchain-openai build this model its own HTTP
        # client instead of sharing a process-wide one across event loops.
        timeout=openai.Timeout(llm.timeout_s, connect=10.0),
        max_retries=1,
        stream_usage=True,
    )


def _part_path(part: str) -> Path:
    module, _, rel = part.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"model package {module!r} is not installed; run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise Unavailable(f"model part {path} is missing")
    return path


def gguf_path(local: LocalModelSettings, models_dir: Path) -> Path:
    """The packaged GGUF: in place when it is one file, else joined once into ``models_dir``."""
    if not local.parts:
        raise Unavailable("llm.local.parts is empty: no packaged model is configured")
    paths = [_part_path(p) for p in local.parts]
    if len(paths) == 1:
        return paths[0]
    target = models_dir / local.file
    if not target.exists():
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as out:
            for path in paths:
                with path.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        tmp.replace(target)
    return target


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a GGUF whose sha256 differs from the pin (checked once per file, then stamped)."""
    if not expected:
        return
    stamp = path.with_name(path.name + ".sha256-ok")
    if stamp.exists() and stamp.read_text().strip() == f"{expected} {path.stat().st_size}":
        return
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise Unavailable(f"{path.name}: sha256 {h.hexdigest()} does not match the pin {expected}")
    try:
        stamp.write_text(f"{expected} {path.stat().st_size}")
    except OSError:
        pass


class LocalModelServer:
    """A llama.cpp OpenAI-compatible server on a packaged GGUF, in a child process."""

    def __init__(
        self, local: LocalModelSettings, models_dir: Path, log_file: Path | None = None
    ) -> None:
        """Prepare a server for ``local`` (nothing starts yet); its output goes to ``log_file``."""
        self.local = local
        self.models_dir = models_dir
        self.log_file = log_file
        self.port = local.port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait until ``/health`` answers; returns the base URL."""
        path = gguf_path(self.local, self.models_dir)
        verify_sha256(path, self.local.sha256)
        cmd = [
            sys.executable,
            "-m",
            "graphs.llm",
            "--model",
            str(path),
            "--port",
            str(self.port),
            "--n-ctx",
            str(self.local.n_ctx),
            "--parallel",
            str(self.local.n_parallel),
            "--threads",
            str(self.local.threads),
        ]
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + self.local.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"local model server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self.base_url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise Unavailable("local model server did not become healthy in time")

    def stop(self) -> None:
        """Stop the server process."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _serve(argv: list[str] | None = None) -> None:
    import xllamacpp

    _die_with_parent()

    p = argparse.ArgumentParser(description="Serve a GGUF over the OpenAI API with llama.cpp")
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    params = xllamacpp.CommonParams()
    params.model.path = a.model
    params.hostnames = ["127.0.0.1"]
    params.port = a.port
    params.n_ctx = a.n_ctx
    params.n_parallel = a.parallel
    params.cpuparams.n_threads = a.threads
    params.cpuparams_batch.n_threads = a.threads
    params.use_jinja = True
    params.warmup = False
    server = xllamacpp.Server(params)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server


if __name__ == "__main__":
    _serve()
