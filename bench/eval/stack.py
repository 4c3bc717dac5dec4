"""The Keel the evaluation runs against: its own ``keel serve`` (default) or a given URL.

Its own stack is ``keel serve`` in the dev config on a free port with ``KEEL_DATA_DIR`` a fresh
temporary directory (embedded Postgres, the packaged local model as ``keel serve`` starts it),
stopped and removed afterwards. ``--model-file`` serves another GGUF with the same llama.cpp
server module (``python -m graphs.llm``) and ``--llm-base-url`` any OpenAI-compatible URL.
The corpus is added with ``keel ingest PATH --tenant T`` and the calendar seed is written to
the tool's table, both in the stack's database (given with ``--database-url`` for a URL).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.eval.tasks import CORPUS_DIR, Meeting, Task
from core.db import EmbeddedPostgres, free_port
from core.identity import issue_token
from core.settings import ROOT, AuthSettings

START_TIMEOUT_S = 600.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment for Keel's processes: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@dataclass
class Stack:
    """A Keel to evaluate: where it is, how to sign tokens, where its database is."""

    url: str
    auth: AuthSettings
    database_url: str | None
    model: str
    data_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _ingested: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)

    def token(self, task: Task) -> str:
        """A token for the task's caller (user, tenant, scopes, tier)."""
        return issue_token(
            self.auth,
            user=task.user,
            tenant=task.tenant_name,
            scopes=list(task.scopes),
            tier=task.tier,
            ttl_s=3 * 3600,
        )

    def database(self) -> str:
        """The database URL (its own stack's embedded Postgres, or ``--database-url``)."""
        if self.database_url:
            return self.database_url
        if self.data_dir is not None:
            url = EmbeddedPostgres.running_url(self.data_dir / "pg")
            if url:
                return url
        raise RuntimeError("no database: pass --database-url with --url to seed or ingest")

    def prepare(self, task: Task) -> None:
        """Ingest the task's corpus and write its calendar seed for its tenant."""
        if task.corpus:
            key = (task.tenant_name, tuple(sorted(task.corpus)))
            if key not in self._ingested:
                self.ingest(task.tenant_name, [CORPUS_DIR / p for p in task.corpus])
                self._ingested.add(key)
        if task.calendar:
            seed_calendar(self.database(), task.tenant_name, task.user, task.calendar)

    def ingest(self, tenant: str, paths: list[Path]) -> None:
        """``keel ingest PATH... --tenant T`` beside the running server."""
        env = dict(self.env) or child_env()
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        cmd = [sys.executable, "-m", "api.cli", "ingest", *map(str, paths), "--tenant", tenant]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"keel ingest failed: {done.stderr[-1000:]}")


def seed_calendar(database_url: str, tenant: str, user: str, meetings: list[Meeting]) -> None:
    """Replace the tenant's calendar with ``meetings`` (times relative to today, UTC)."""
    import psycopg

    from tools.servers.calendar.v1.server import SCHEMA

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7301)")
            conn.execute(SCHEMA)
        conn.execute("DELETE FROM tool_calendar_events WHERE tenant = %s", (tenant,))
        for m in meetings:
            start = today + timedelta(days=m.day_offset, hours=m.hour, minutes=m.minute)
            conn.execute(
                "INSERT INTO tool_calendar_events (tenant, title, starts_at, ends_at, created_by)"
                " VALUES (%s, %s, %s, %s, %s)",
                (tenant, m.title, start, start + timedelta(minutes=m.duration_min), user),
            )


class OwnStack:
    """``keel serve`` on a fresh data directory, for the evaluation's duration."""

    def __init__(
        self,
        model_file: Path | None = None,
        llm_base_url: str | None = None,
        keep: bool = False,
        log: bool = True,
    ) -> None:
        """Prepare (nothing starts until ``start``)."""
        self.model_file = model_file
        self.llm_base_url = llm_base_url
        self.keep = keep
        self.log = log
        self.data_dir = Path(tempfile.mkdtemp(prefix="keel-eval-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def _say(self, text: str) -> None:
        if self.log:
            print(f"eval: {text}", file=sys.stderr, flush=True)

    def start(self) -> Stack:
        """Start the model server if asked, then ``keel serve``; wait until it is ready."""
        from core.settings import get_settings

        # Tokens are signed with the dev config's secret, the one the child serves with.
        os.environ["KEEL_ENV"] = "dev"
        get_settings.cache_clear()
        env = child_env(KEEL_DATA_DIR=str(self.data_dir))
        for var in ("DATABASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
            env.pop(var, None)
        settings = get_settings()
        model = settings.llm.local.file
        base_url = self.llm_base_url
        if self.model_file is not None:
            base_url = self._model_server(self.model_file, env)
            model = self.model_file.name
        if base_url:
            env["KEEL_LLM__BASE_URL"] = base_url
            if self.model_file is None:
                model = _served_model(base_url)
        port = free_port()
        self._say(f"starting keel serve on port {port} (data in {self.data_dir})")
        out = (self.data_dir / "serve.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        self._wait(url + "/readyz", proc)
        self._say(f"keel serve ready at {url}")
        return Stack(
            url=url,
            auth=settings.auth,
            database_url=None,
            model=model,
            data_dir=self.data_dir,
            env=env,
        )

    def _model_server(self, model_file: Path, env: dict[str, str]) -> str:
        port = free_port()
        out = (self.data_dir / "llm.log").open("ab")
        cmd = [
            sys.executable,
            "-m",
            "graphs.llm",
            "--model",
            str(model_file.resolve()),
            "--port",
            str(port),
        ]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.procs.append(proc)
        self._say(f"starting llama.cpp on {model_file.name}")
        self._wait(f"http://127.0.0.1:{port}/health", proc)
        return f"http://127.0.0.1:{port}/v1"

    def _wait(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}; {self._tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{url} not ready after {START_TIMEOUT_S:.0f} s; {self._tail()}")

    def _tail(self) -> str:
        logs = [p for p in (self.data_dir / "serve.log", self.data_dir / "llm.log") if p.exists()]
        return " | ".join(p.read_text(errors="replace")[-1500:] for p in logs)

    def stop(self) -> None:
        """Stop what ``start`` started (on SIGTERM serve stops Postgres and the model); clean up."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        if self.keep:
            self._say(f"kept {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _served_model(base_url: str) -> str:
    """The model id an OpenAI-compatible server names first (the URL when it names none)."""
    with suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
        data = httpx.get(base_url.rstrip("/") + "/models", timeout=10).json()
        return str(data["data"][0]["id"])
    return base_url
