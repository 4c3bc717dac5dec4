"""The ``keel`` command line: serving, tokens and keys, maintenance, tools, benchmarks."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("keel")
T = TypeVar("T")


def _with(settings: Settings, section: str, **values: Any) -> Settings:
    part = getattr(settings, section).model_copy(update=values)
    return settings.model_copy(update={section: part})


def start_dependencies(
    settings: Settings,
    stack: ExitStack,
    on_database_lost: Callable[[BaseException], None] | None = None,
) -> Settings:
    """Start (or share) embedded Postgres and the local model when the config asks for them.

    With ``on_database_lost``, an embedded Postgres that dies is started again, and
    ``on_database_lost`` is called if that fails.
    """
    from core.db import EmbeddedPostgres
    from graphs.llm import LocalModelServer

    if not settings.database.url:
        pg = EmbeddedPostgres(settings.data_dir / "pg", settings.database.embedded_port)
        settings = _with(settings, "database", url=stack.enter_context(pg.use()))
        if on_database_lost is not None:
            pg.watch(on_database_lost)
        print(f"keel: embedded Postgres on {pg.url}", flush=True)
    if settings.llm.provider == "local" and not settings.llm.base_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        server = LocalModelServer(
            settings.llm.local, settings.data_dir / "models", settings.data_dir / "llm.log"
        )
        print(f"keel: starting the local model ({settings.llm.local.file})...", flush=True)
        base_url = server.start()
        stack.callback(server.stop)
        settings = _with(settings, "llm", base_url=base_url)
        print(f"keel: local model on {base_url}", flush=True)
    return settings


def _bound(settings: Settings, host: str | None, port: int | None) -> Settings:
    """``settings`` with ``keel serve``'s ``--host``/``--port`` applied.

    A named ``--host`` is also a ``Host`` value the server answers to (the DNS-rebinding
    check would refuse requests addressed to it otherwise); a wildcard (``0.0.0.0``, ``::``)
    names no host, so ``server.allowed_hosts`` still says which names are served.
    """
    server = settings.server
    update: dict[str, Any] = {} if port is None else {"port": port}
    if host is not None:
        update["host"] = host
        if host not in ("0.0.0.0", "::") and host not in server.allowed_hosts:
            update["allowed_hosts"] = [*server.allowed_hosts, host]
    return _with(settings, "server", **update)


def _serve(args: argparse.Namespace) -> int:
    from api.app import create_app
    from api.server import server_config
    from core.otel import instrument_httpx
    from core.tracing import configure_logging

    settings = _bound(get_settings(), args.host, args.port)
    configure_logging(settings.log.level, settings.log.json_logs)
    exit_code = 0

    def database_lost(exc: BaseException) -> None:
        # Shut down gracefully and exit non-zero, so that a supervisor restarts the stack.
        nonlocal exit_code
        exit_code = 1
        print(f"keel: embedded Postgres is gone and could not be restarted: {exc}", flush=True)
        os.kill(os.getpid(), signal.SIGINT)

    with ExitStack() as stack:
        settings = start_dependencies(settings, stack, database_lost)
        app = create_app(settings)
        if settings.tracing.enabled:
            instrument_httpx()
        # uvicorn re-raises SIGTERM after its graceful shutdown; make that unwind the stack
        # (stopping Postgres and the model server) instead of killing the process.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _Announcing(server_config(app, settings)).run()
    return exit_code


class _Announcing(uvicorn.Server):
    """uvicorn's server, printing the URL once the app has started and the socket listens.

    Printed earlier, the URL would be there before the app could answer it.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # a failed startup (port taken, lifespan error) sets it
            host, port = self.config.host, self.config.port
            print(f"keel: serving on http://{host}:{port}/  (Ctrl-C stops everything)", flush=True)


def _dev_tokens_allowed(settings: Settings) -> bool:
    return settings.env != "prod" or settings.auth.dev_tokens


def _client_token(args: argparse.Namespace, command: str) -> str:
    """``KEEL_TOKEN``, or a dev token for ``--user``/``--tenant`` where dev tokens are allowed."""
    token = os.environ.get("KEEL_TOKEN")
    if token:
        return token
    from core.identity import issue_token

    settings = get_settings()
    if not _dev_tokens_allowed(settings):
        raise SystemExit(f"keel {command}: set KEEL_TOKEN (dev tokens are disabled in prod)")
    return issue_token(settings.auth, user=args.user, tenant=args.tenant, scopes=[])


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--user", default="alice")
    p.add_argument("--tenant", default="default")


def _token(args: argparse.Namespace) -> int:
    from core.identity import issue_token

    settings = get_settings()
    if not _dev_tokens_allowed(settings):
        print("keel token: dev tokens are disabled in prod", file=sys.stderr)
        return 2
    scopes = [s for s in args.scopes.split(",") if s]
    print(
        issue_token(
            settings.auth,
            user=args.user,
            tenant=args.tenant,
            scopes=scopes,
            tier=args.tier,
            ttl_s=args.ttl,
        )
    )
    return 0


def _apikey(args: argparse.Namespace) -> int:
    """Create or revoke a service account's API key in the configured (or embedded) Postgres."""
    from core.apikeys import create_key, revoke_key
    from core.db import migrate

    async def run(pool: AsyncConnectionPool[Any]) -> int:
        async with pool.connection() as conn:
            await migrate(conn)
            if args.action == "create":
                scopes = [s for s in args.scopes.split(",") if s]
                key_id, key = await create_key(
                    conn, user=args.user, tenant=args.tenant, tier=args.tier, scopes=scopes
                )
                print(
                    f"keel: API key {key_id} for {args.tenant}/{args.user} ({args.tier});"
                    " shown once, store it now:",
                    file=sys.stderr,
                )
                print(key)
                return 0
            if await revoke_key(conn, args.key_id):
                print(f"keel: API key {args.key_id} revoked", file=sys.stderr)
                return 0
            print(f"keel: no live API key {args.key_id}", file=sys.stderr)
            return 1

    return _on_database(get_settings(), run)


def _studio(args: argparse.Namespace) -> int:
    """Run ``langgraph dev`` on langgraph.json, with the local model started for it."""
    settings = get_settings()
    with ExitStack() as stack:
        settings = start_dependencies(_with(settings, "database", url="unused"), stack)
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "1",
            "KEEL_LLM__BASE_URL": settings.llm.base_url or "",
        }
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "langgraph"),
            "dev",
            "--port",
            str(args.port),
            "--no-browser",
            "--no-reload",
        ]
        return subprocess.call(cmd, env=env)


def _database_url(settings: Settings, stack: ExitStack) -> str:
    """The configured database, or the embedded one: shared with a running ``keel serve``."""
    from core.db import EmbeddedPostgres

    if settings.database.url:
        return settings.database.url
    pg = EmbeddedPostgres(settings.data_dir / "pg", settings.database.embedded_port)
    return stack.enter_context(pg.use())


def _on_database(settings: Settings, work: Callable[[AsyncConnectionPool[Any]], Awaitable[T]]) -> T:
    """Run ``work`` with a small pool on the configured (or embedded) database, then close it."""
    import asyncio

    from core.db import open_pool

    async def go(url: str) -> T:
        pool = await open_pool(url, 1, 2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    with ExitStack() as stack:
        return asyncio.run(go(_database_url(settings, stack)))


def _prune(args: argparse.Namespace) -> int:
    from runs.retention import prune
    from tools.artifacts import ArtifactStore

    settings = get_settings()
    retention = settings.retention.model_copy(
        update={
            k: v
            for k, v in (("days", args.days), ("max_events_per_thread", args.max_events))
            if v is not None
        }
    )

    async def go(pool: AsyncConnectionPool[Any]) -> None:
        from memory.session import FolderInUse, SessionMemory, open_session_memory

        session: SessionMemory | None = None
        if settings.memory.session.enabled:
            try:
                session = await open_session_memory(settings.memory.session, settings.data_dir)
            except FolderInUse:
                print(
                    "keel prune: session memory is held by a running server (local mode);"
                    " the pruned threads' facts stay in it (a Qdrant server avoids this)",
                    file=sys.stderr,
                )
        try:
            artifacts = ArtifactStore(settings.data_dir / "artifacts")
            report = await prune(pool, retention, session, artifacts)
        finally:
            if session is not None:
                await session.close()
        print(
            f"keel prune: {report.threads} threads, {report.events} events and"
            f" {report.artifacts} artifacts removed"
        )

    _on_database(settings, go)
    return 0


def _feedback(args: argparse.Namespace) -> int:
    """``keel feedback export``: feedback with question, answer and tool calls, as JSONL."""
    import json

    from runs.feedback import export_rows

    async def go(pool: AsyncConnectionPool[Any]) -> int:
        rows = await export_rows(pool, args.tenant)
        with open(args.output, "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, default=str) + "\n")
        print(f"keel feedback export: {len(rows)} rows to {args.output}", file=sys.stderr)
        return 0

    return _on_database(get_settings(), go)


def _memory(args: argparse.Namespace) -> int:
    from core.db import migrate
    from memory.long_term import Keyring, LongTermMemory

    settings = get_settings()
    mem = settings.memory

    async def go(pool: AsyncConnectionPool[Any]) -> None:
        async with pool.connection() as conn:
            await migrate(conn)
        done = await LongTermMemory(
            pool, Keyring(mem.master_key, mem.previous_master_keys)
        ).rotate()
        print(f"keel memory rotate-key: {done} long-term records re-encrypted")

    _on_database(settings, go)
    return 0


def _record(args: argparse.Namespace) -> int:
    import json

    from runs.recording import record

    token = _client_token(args, "record")
    rec = record(args.url, token, args.thread_id, args.run_id)
    with open(args.output, "w") as f:
        json.dump(rec, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(
        f"keel record: {len(rec['events'])} events, {len(rec['model_outputs'])} model outputs"
        f" -> {args.output}"
    )
    return 0


def _tools(args: argparse.Namespace) -> int:
    """``keel tools lock``: record the pinned servers' tool schemas in tools.lock."""
    import asyncio

    from tools.gateway import write_lock_file

    path = asyncio.run(write_lock_file(get_settings(), args.pins or None))
    print(f"keel: wrote {path}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    """``keel ingest PATH...``: add files to a tenant's documents and index them."""
    from pathlib import Path

    from core.db import migrate
    from core.embeddings import embedder_for
    from tools.servers.documents.corpus import ingest

    settings = get_settings()

    async def work(pool: AsyncConnectionPool[Any]) -> dict[str, Any]:
        embedder = embedder_for(settings.memory.session)
        async with pool.connection() as conn:
            await migrate(conn)
            paths = [Path(p) for p in args.paths]
            return await ingest(conn, embedder, args.tenant, paths, settings.documents)

    stats = _on_database(settings, work)
    for path, reason in stats["refused"].items():
        print(f"keel: skipped {path}: {reason}", file=sys.stderr)
    print(
        f"keel: ingested {stats['files']} files ({stats['chunks']} chunks),"
        f" {stats['unchanged']} unchanged, for tenant {args.tenant}"
    )
    return 1 if stats["refused"] else 0


def _trace(args: argparse.Namespace) -> int:
    import httpx

    token = _client_token(args, "trace")
    r = httpx.get(
        f"{args.url}/v1/traces/{args.trace_id}",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )
    if r.status_code != 200:
        raise SystemExit(f"keel trace: {r.status_code} {r.text}")
    for run in r.json()["runs"]:
        spans = run["spans"]
        t0 = spans[0]["start"] if spans else ""
        print(f"run {run['run_id']}  thread {run['thread_id']}  {run['status']}")
        total = max(spans[0]["duration_ms"], 1.0) if spans else 1.0
        for span in spans:
            from datetime import datetime

            offset = datetime.fromisoformat(span["start"]) - datetime.fromisoformat(t0)
            left = int(40 * offset.total_seconds() * 1000 / total)
            width = max(1, int(40 * span["duration_ms"] / total))
            bar = " " * left + "#" * width
            print(
                f"  {span['kind']:4s} {span['name'][:34]:34s} {span['duration_ms']:9.1f} ms"
                f"  {span['status']:8s} |{bar:<41s}|"
            )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """``keel doctor``: one line per configured dependency; exit 1 when any check fails."""
    import asyncio

    from api.doctor import run_checks

    names = [n for n in args.only.split(",") if n] if args.only else None
    checks = asyncio.run(run_checks(get_settings(), names))
    for check in checks:
        print(check.line(), flush=True)
    failed = [c.name for c in checks if not c.ok]
    print(f"keel doctor: {len(checks) - len(failed)} ok, {len(failed)} failed", flush=True)
    return 1 if failed else 0


def _bench(args: argparse.Namespace) -> int:
    """``keel bench``: run ``python -m bench.suite`` from the checkout (not part of the package)."""
    from core.settings import ROOT

    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "bench.suite", *args.suite_args]
    return subprocess.call(cmd, env={**os.environ, "PYTHONPATH": path})


def _eval(args: argparse.Namespace) -> int:
    """``keel eval``: ``python -m bench.eval`` from the checkout root (bench/ is not packaged)."""
    from core.settings import ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "bench.eval", *args.eval_args]
    return subprocess.call(cmd, cwd=ROOT, env=env)


def _serving_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Serving and access: ``serve``, ``token``, ``apikey``, ``studio``."""
    p = sub.add_parser("serve", help="start Postgres, the local model and the API")
    p.add_argument("--host", default=None, help="bind address (default: server.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: server.port)")
    p.set_defaults(fn=_serve)
    p = sub.add_parser("token", help="print a dev JWT")
    p.add_argument("--user", required=True)
    p.add_argument("--tenant", default="default")
    p.add_argument("--scopes", default="")
    p.add_argument("--tier", choices=["free", "pro", "enterprise"], default="free")
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    p.set_defaults(fn=_token)
    p = sub.add_parser("apikey", help="create or revoke API keys for service accounts")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create", help="print a new API key (stored hashed)")
    k.add_argument("--user", required=True)
    k.add_argument("--tenant", default="default")
    k.add_argument("--tier", choices=["free", "pro", "enterprise"], default="free")
    k.add_argument("--scopes", default="")
    k = keys.add_parser("revoke", help="revoke an API key by its id")
    k.add_argument("key_id")
    p.set_defaults(fn=_apikey)
    p = sub.add_parser("studio", help="serve the graph with `langgraph dev`")
    p.add_argument("--port", type=int, default=2025)
    p.set_defaults(fn=_studio)


def _run_data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """What runs leave behind: ``trace``, ``prune``, ``feedback``, ``record``."""
    p = sub.add_parser("trace", help="print a trace's runs as a waterfall")
    p.add_argument("trace_id")
    _add_client_args(p)
    p.set_defaults(fn=_trace)
    p = sub.add_parser("prune", help="apply the retention policy to threads and events")
    p.add_argument("--days", type=int, default=None)
    p.add_argument("--max-events", type=int, default=None)
    p.set_defaults(fn=_prune)
    p = sub.add_parser("feedback", help="`keel feedback export -o FILE` writes feedback as JSONL")
    p.add_argument("action", choices=["export"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--tenant", default=None, help="only this tenant's feedback")
    p.set_defaults(fn=_feedback)
    p = sub.add_parser("record", help="save a run's events and model outputs for replay tests")
    p.add_argument("thread_id")
    p.add_argument("--run-id", default=None, help="default: the thread's last run")
    p.add_argument("-o", "--output", required=True)
    _add_client_args(p)
    p.set_defaults(fn=_record)


def _upkeep_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Upkeep: ``tools``, ``memory``, ``ingest``, ``doctor``, ``bench``, ``eval``."""
    p = sub.add_parser("tools", help="tool servers: `keel tools lock` rewrites tools.lock")
    p.add_argument("action", choices=["lock"])
    p.add_argument("pins", nargs="*", help="only these mcp_servers entries (default: all)")
    p.set_defaults(fn=_tools)
    p = sub.add_parser("memory", help="`keel memory rotate-key` re-encrypts long-term memory")
    p.add_argument("action", choices=["rotate-key"])
    p.set_defaults(fn=_memory)
    p = sub.add_parser(
        "ingest", help="add Markdown, text, HTML and PDF files to a tenant's documents"
    )
    p.add_argument("paths", nargs="+")
    p.add_argument("--tenant", default="default")
    p.set_defaults(fn=_ingest)
    p = sub.add_parser("doctor", help="check every configured dependency, one line each")
    p.add_argument("--only", default="", help="comma-separated checks (default: all)")
    p.set_defaults(fn=_doctor)
    p = sub.add_parser(
        "bench",
        help="benchmarks against LangGraph Server and physical limits (bench/suite.py's options)",
        add_help=False,  # `keel bench --help` is bench/suite.py's own
    )
    p.set_defaults(fn=_bench)
    p = sub.add_parser(
        "eval",
        help="end-to-end evaluation with the real model (bench/eval's options)",
        add_help=False,  # `keel eval --help` is bench/eval's own
    )
    p.set_defaults(fn=_eval)


def build_parser() -> argparse.ArgumentParser:
    """The ``keel`` command line's parser."""
    parser = argparse.ArgumentParser(prog="keel", description="Keel agent service")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _serving_commands(sub)
    _run_data_commands(sub)
    _upkeep_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``keel`` console script."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.cmd == "bench":
        args.suite_args = rest  # parsed by bench/suite.py
    elif args.cmd == "eval":
        args.eval_args = rest  # parsed by bench/eval/cli.py
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
