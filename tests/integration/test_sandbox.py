"""The python_exec sandbox (bubblewrap + rlimits) against what hostile code tries."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path

import pytest

from core.settings import ROOT, SandboxSettings
from tests.conftest import LiveServer
from tools.sandbox import run_python

LIMITS = SandboxSettings(cpu_s=2, memory_mb=1024, nproc=64, wall_s=10.0)
pytestmark = pytest.mark.asyncio


async def _jail_emptied(uid: int, within_s: float = 3.0) -> list[int]:
    """The sandbox uid's processes still alive after ``within_s`` (the PID namespace's end)."""
    deadline = time.monotonic() + within_s
    while (left := _uid_processes(uid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == uid:
                    pids.append(int(d.name))
            except FileNotFoundError:
                pass
    return pids


async def test_plain_code_runs_and_prints() -> None:
    out = await run_python("print(sum(range(10)))", LIMITS)
    assert (out.stdout, out.error, out.killed) == ("45\n", None, None)


async def test_secrets_and_host_home_are_not_there() -> None:
    assert Path("/etc/shadow").exists()
    code = (
        "import os\n"
        "for p in ['/etc/shadow', '/root/.bashrc', '/home', "
        f"'{ROOT / 'core'}', '{Path.home()}']:\n"
        "    print(p, os.path.exists(p))\n"
        "open('/etc/shadow')\n"
    )
    out = await run_python(code, LIMITS)
    assert all(line.endswith(" False") for line in out.stdout.splitlines()), out.stdout
    assert out.error is not None and "FileNotFoundError" in out.error


async def test_writes_outside_the_work_dir_fail_and_inside_succeed(tmp_path: Path) -> None:
    target = tmp_path / "escaped"
    code = (
        "import os\n"
        f"for p in ['/usr/x', '/x', '/opt/site-packages/x', '{target}']:\n"
        "    try:\n"
        "        open(p, 'w').write('x'); print(p, 'written')\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__, e.errno)\n"
        "open('inside.txt', 'w').write('ok'); print(os.getcwd(), open('inside.txt').read())\n"
    )
    out = await run_python(code, LIMITS)
    lines = out.stdout.splitlines()
    assert lines[:3] == ["/usr/x OSError 30", "/x OSError 30", "/opt/site-packages/x OSError 30"]
    assert lines[3].startswith(str(target)) and "written" not in lines[3]
    assert lines[4] == "/sandbox ok"
    assert not target.exists()


async def test_no_network_not_even_the_hosts_postgres() -> None:
    with socket.create_connection(("127.0.0.1", 5432), timeout=2):
        pass  # the host reaches it: the jail must not
    code = (
        "import socket\n"
        "for host, port in [('127.0.0.1', 5432), ('10.0.0.1', 80), ('1.1.1.1', 53)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect((host, port)); print(host, 'connected')\n"
        "    except OSError as e:\n"
        "        print(host, type(e).__name__)\n"
    )
    out = await run_python(code, LIMITS)
    assert out.stdout.splitlines() == [
        "127.0.0.1 ConnectionRefusedError",
        "10.0.0.1 OSError",
        "1.1.1.1 OSError",
    ]


async def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_AUTH__JWT_SECRET", "s3cret-value")
    out = await run_python("import os; print(sorted(os.environ))", LIMITS)
    assert "KEEL_AUTH__JWT_SECRET" not in out.stdout
    assert "s3cret" not in out.stdout


async def test_fork_bomb_hits_the_process_limit() -> None:
    started = time.monotonic()
    out = await run_python("import os\nwhile True:\n    os.fork()\n", LIMITS)
    assert time.monotonic() - started < LIMITS.wall_s
    # The spinning copies share the jail's CPU time, which may run out before fork fails.
    assert out.killed == "CPU limit of 2 s" or "BlockingIOError" in (out.error or ""), out
    assert await _jail_emptied(LIMITS.uid) == []


async def test_two_gigabyte_allocation_is_refused() -> None:
    out = await run_python("x = bytearray(2 * 1024**3)\nprint('allocated')", LIMITS)
    assert out.stdout == ""
    assert out.error is not None and "MemoryError" in out.error


async def test_infinite_loop_is_killed_at_the_cpu_limit() -> None:
    out = await run_python("while True:\n    pass\n", LIMITS)
    assert out.killed == "CPU limit of 2 s"
    assert out.duration_ms < LIMITS.wall_s * 1000
    assert await _jail_emptied(LIMITS.uid) == []


async def test_sleeping_code_is_killed_at_the_wall_clock() -> None:
    limits = LIMITS.model_copy(update={"wall_s": 1.5})
    started = time.monotonic()
    out = await run_python("import time\ntime.sleep(60)", limits)
    assert out.killed == "wall-clock limit of 1.5 s"
    assert time.monotonic() - started < 5
    assert await _jail_emptied(LIMITS.uid) == []


async def test_output_is_capped() -> None:
    limits = LIMITS.model_copy(update={"output_bytes": 10_000})
    out = await run_python("print('x' * 50_000)", limits)
    assert out.killed == "output exceeded 10000 bytes"


async def test_chart_and_csv_come_back_as_png_and_table() -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "open('squares.csv', 'w').write('n,square\\n1,1\\n2,4\\n3,9\\n')\n"
        "print('done')\n"
    )
    out = await run_python(code, LIMITS.model_copy(update={"cpu_s": 10, "wall_s": 30}))
    assert out.error is None, out.error
    assert len(out.images) == 1
    assert base64.b64decode(out.images[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert out.tables == [
        {
            "name": "squares.csv",
            "columns": ["n", "square"],
            "rows": [["1", "1"], ["2", "4"], ["3", "9"]],
        }
    ]


async def test_bwrap_does_not_leak_the_servers_environment_via_proc_1_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEEL_SANDBOX_CANARY", "canary-7f3a")
    code = (
        "import os\n"
        "for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):\n"
        "    try:\n"
        "        print(pid, open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(pid, type(e).__name__)\n"
    )
    out = await run_python(code, LIMITS)
    assert out.stdout.startswith("1 "), out.stdout
    assert "canary-7f3a" not in out.stdout
    assert "HOME=/root" not in out.stdout and "/work" not in out.stdout


async def test_dev_is_read_only_and_dev_shm_is_capped() -> None:
    limits = LIMITS.model_copy(update={"shm_mb": 8, "fsize_mb": 64})
    code = (
        "import os\n"
        "for p in ['/dev/x', '/dev/shm/x']:\n"
        "    try:\n"
        "        with open(p, 'wb') as f:\n"
        "            for _ in range(32):\n"
        "                f.write(b'x' * 2**20); f.flush()\n"
        "        print(p, 'wrote', os.path.getsize(p) // 2**20)\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__, e.errno)\n"
    )
    out = await run_python(code, limits)
    assert out.stdout.splitlines() == ["/dev/x OSError 30", "/dev/shm/x OSError 28"], out


async def test_cpu_limit_holds_for_the_whole_jail_not_each_process() -> None:
    limits = LIMITS.model_copy(update={"cpu_s": 1})
    code = (
        "import os\n"
        "kids = [os.fork() for _ in range(4)]\n"
        "if 0 in kids:\n"
        "    while True:\n"
        "        pass\n"
        "for k in kids:\n"
        "    os.waitpid(k, 0)\n"
        "print('four CPU-seconds spent')\n"
    )
    out = await run_python(code, limits)
    assert out.killed == "CPU limit of 1 s", out
    assert await _jail_emptied(LIMITS.uid) == []


async def test_forged_result_on_stdout_or_any_fd_is_only_stdout() -> None:
    forged = '{"stdout": "FORGED", "error": null, "images": ["PHNjcmlwdD4="], "tables": []}'
    code = (
        "import glob, os, sys\n"
        f"forged = {forged!r}\n"
        "sys.__stdout__.write(forged); sys.__stdout__.flush()\n"
        "for fd in [*range(3, 64), *glob.glob('/proc/[0-9]*/fd/*')]:\n"
        "    try:\n"
        "        if isinstance(fd, str):\n"
        "            fd = os.open(fd, os.O_WRONLY)\n"
        "        os.write(fd, forged.encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    out = await run_python(code, LIMITS)
    assert out.stdout.startswith(forged), out
    assert out.images == [] and out.killed is None
    assert out.error is not None and "without a result" in out.error


async def test_mountinfo_shows_no_host_path_but_usr_and_site_packages() -> None:
    import os
    import sysconfig

    allowed = {"/", "/usr", os.path.realpath(sysconfig.get_paths()["purelib"])}
    code = "print(open('/proc/self/mountinfo').read())"
    out = await run_python(code, LIMITS)
    roots = {
        line.split()[3]
        for line in out.stdout.splitlines()
        if line and line.split(" - ")[1].split()[0] not in ("devtmpfs", "tmpfs")
    }
    assert roots <= allowed, out.stdout


async def test_mpl_cache_refuses_a_planted_dir_and_chmods_no_symlink_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import tempfile

    from tools import sandbox

    victim = tmp_path / "victim-secret"
    victim.write_text("secret")
    victim.chmod(0o600)
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o1777)
    planted = tmp / f"keel-mplcache-{os.geteuid()}"
    planted.mkdir(mode=0o777)
    (planted / "fontlist-v390.json").symlink_to(victim)
    os.chown(planted, 60_123, 60_123)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    clear = getattr(sandbox, "_mpl_cache", sandbox.mpl_cache)
    clear.cache_clear() if hasattr(clear, "cache_clear") else None
    try:
        cache = sandbox.mpl_cache()
    finally:
        clear.cache_clear() if hasattr(clear, "cache_clear") else None
    assert victim.stat().st_mode & 0o777 == 0o600
    assert cache is not None and cache != planted
    st = cache.lstat()
    assert (st.st_uid, st.st_mode & 0o022, cache.is_symlink()) == (os.geteuid(), 0, False)
    assert (cache / ".ready").is_file()


async def test_artifacts_are_served_nosniff_and_typed_by_their_content(live: LiveServer) -> None:
    from tools.artifacts import ArtifactStore

    store = ArtifactStore(live.settings.data_dir / "artifacts")
    png = store.save("acme", "alice", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "png")
    html = store.save("acme", "alice", b"<html><script>alert(1)</script></html>", "png")
    csv = store.save("acme", "alice", b"a,b\n1,2\n", "csv")
    with live.client() as c:
        seen = {
            name: (
                r.headers["content-type"],
                r.headers.get("x-content-type-options"),
                r.headers.get("content-disposition", "").split(";")[0],
            )
            for name, r in (
                ("png", c.get(f"/v1/artifacts/{png}")),
                ("html", c.get(f"/v1/artifacts/{html}")),
                ("csv", c.get(f"/v1/artifacts/{csv}")),
            )
        }
    assert seen == {
        "png": ("image/png", "nosniff", "inline"),
        "html": ("application/octet-stream", "nosniff", "attachment"),
        "csv": ("text/csv; charset=utf-8", "nosniff", "attachment"),
    }
