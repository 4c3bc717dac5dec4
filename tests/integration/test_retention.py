"""Retention: `keel prune` removes old threads (with checkpoints) and trims long event logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import LiveServer, stream_run
from tools.artifacts import ArtifactStore


def test_prune_removes_old_threads_and_trims_long_logs(live: LiveServer) -> None:
    with live.client() as c:
        old, recent, long = (c.post("/v1/threads").json()["thread_id"] for _ in range(3))
        for tid in (old, recent, long, long):
            stream_run(c, tid, "hi")
    live.sql("UPDATE runs SET started_at = now() - interval '40 days' WHERE thread_id = %s", old)
    n_long = live.sql("SELECT max(seq) AS m FROM events WHERE thread_id = %s", long)[0]["m"]
    assert n_long > 15
    store = ArtifactStore(live.settings.data_dir / "artifacts")
    stale, fresh = (store.save("acme", "alice", b"\x89PNG\r\n\x1a\n", "png") for _ in range(2))
    stale_file = store.path("acme", "alice", stale)
    assert stale_file is not None
    month_ago = time.time() - 40 * 86_400
    os.utime(stale_file, (month_ago, month_ago))
    env = {
        "KEEL_ENV": "test",
        "DATABASE_URL": live.settings.database.url or "",
        "KEEL_DATA_DIR": str(live.settings.data_dir),
    }
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "prune", "--days", "30", "--max-events", "15"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.startswith("keel prune: 1 threads") and "and 1 artifacts removed" in out
    assert store.path("acme", "alice", stale) is None
    assert store.path("acme", "alice", fresh) is not None
    assert live.sql("SELECT 1 FROM threads WHERE thread_id = %s", old) == []
    assert live.sql("SELECT 1 FROM events WHERE thread_id = %s", old) == []
    assert live.sql("SELECT 1 FROM checkpoints WHERE thread_id = %s", old) == []
    assert live.sql("SELECT 1 FROM checkpoints WHERE thread_id = %s", recent) != []
    seqs = [
        r["seq"] for r in live.sql("SELECT seq FROM events WHERE thread_id = %s ORDER BY seq", long)
    ]
    assert seqs == list(range(n_long - 14, n_long + 1))
    with live.client() as c:
        r = c.get(f"/v1/threads/{old}/history")
        assert r.status_code == 404
        with c.stream("GET", f"/v1/replay/{long}") as resp:
            ids = [line for line in resp.iter_lines() if line.startswith("id: ")]
        assert ids[0] == f"id: {n_long - 14}"
