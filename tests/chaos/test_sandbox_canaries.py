"""Sandbox escapes (OWASP LLM05/LLM06, agentic tool misuse): python_exec against a list of
escape attempts, with host canary files hashed before and after.

The attempts: read host secrets, the Keel config and checkout, the canaries, every
``/proc/*/environ``; write the canaries, the config and outside the jail (also through a
symlink); reach Postgres, Redis and the outside network; open raw devices; signal processes
outside. They run in the real jail directly and once more through a run, via the real
python_exec MCP server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import ROOT, SandboxSettings
from tests.chaos.conftest import scaled
from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_sandbox import _uid_processes
from tools.sandbox import run_python

LIMITS = SandboxSettings(cpu_s=5, memory_mb=1024, nproc=64, wall_s=15.0)
CONFIG = ROOT / "config" / "test.yaml"


@pytest.fixture
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """World-readable and world-writable host files the jail must not reach."""
    d = tmp_path_factory.mktemp("canary")
    d.chmod(0o777)
    files = []
    for i, mode in enumerate((0o644, 0o666)):
        f = d / f"canary-{i}.txt"
        f.write_text(f"host canary {i} {os.urandom(8).hex()}\n")
        f.chmod(mode)
        files.append(f)
    yield files


def _hash(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def escape_code(targets: list[Path]) -> str:
    """Python that tries every escape and prints one JSON line per attempt: (name, result)."""
    return f"""
import json, os, socket, glob
targets = {[str(t) for t in targets]!r}
config = {str(CONFIG)!r}
root = {str(ROOT)!r}
out = {{}}
def attempt(name, fn):
    try:
        out[name] = "ok: " + repr(fn())[:200]
    except BaseException as e:
        out[name] = "blocked: " + type(e).__name__
def read(p):
    return open(p, "rb").read(100)
def write(p):
    with open(p, "a") as f:
        f.write("pwned")
def connect(host, port):
    s = socket.create_connection((host, port), timeout=2); s.close()
def environs():
    seen = {{}}
    for e in glob.glob("/proc/*/environ"):
        data = open(e, "rb").read()
        for needle in (b"KEEL_", b"HOME=/root", b"DATABASE_URL", b"JWT", b"/work"):
            if needle in data:
                seen[e] = needle.decode()
    if seen:
        return seen
    raise PermissionError("no host variable in any /proc/*/environ")
for i, t in enumerate(targets):
    attempt(f"read canary {{i}}", lambda t=t: read(t))
    attempt(f"write canary {{i}}", lambda t=t: write(t))
attempt("read keel config", lambda: read(config))
attempt("write keel config", lambda: write(config))
attempt("list checkout", lambda: os.listdir(root))
attempt("read /etc/shadow", lambda: read("/etc/shadow"))
attempt("read /root", lambda: os.listdir("/root"))
attempt("host variables in /proc/*/environ", environs)
attempt("KEEL_ variables in os.environ", lambda: [k for k in os.environ if "KEEL" in k] or
        (_ for _ in ()).throw(PermissionError("none")))
def via_symlink():
    os.symlink(targets[0], "link")
    return read("link")
attempt("read canary via symlink", via_symlink)
attempt("write /usr", lambda: write("/usr/pwned"))
attempt("write /", lambda: write("/pwned"))
attempt("connect postgres", lambda: connect("127.0.0.1", 5432))
attempt("connect redis", lambda: connect("127.0.0.1", 6379))
attempt("connect outside", lambda: connect("1.1.1.1", 53))
attempt("resolve a name", lambda: socket.getaddrinfo("example.com", 80))
attempt("open /dev/mem", lambda: read("/dev/mem"))
attempt("open a disk", lambda: read(sorted(glob.glob("/dev/sd*") + glob.glob("/dev/vd*") +
        glob.glob("/dev/nvme*") + ["/dev/sda"])[0]))
attempt("signal a host process", lambda: os.kill(os.getppid() + 100000, 0))
print(json.dumps(out))
"""


def _check(results: dict[str, str]) -> list[str]:
    return [f"{name}: {r}" for name, r in results.items() if not r.startswith("blocked")]


@pytest.mark.asyncio
async def test_escape_attempts_are_blocked_and_canaries_unchanged(
    canaries: list[Path], figure: Callable[[str, str], None]
) -> None:
    watched = [*canaries, CONFIG]
    before = _hash(watched)
    out = await run_python(escape_code(canaries), LIMITS)
    assert out.error is None and out.killed is None, (out.error, out.killed)
    results = json.loads(out.stdout)
    escaped = _check(results)
    figure(
        "sandbox",
        f"{len(results)} escape attempts in the jail: {len(results) - len(escaped)} blocked, "
        f"{len(escaped)} escaped; {len(watched)} host canaries "
        f"{'unchanged' if _hash(watched) == before else 'CHANGED'}",
    )
    assert not escaped, escaped
    assert _hash(watched) == before


def test_escape_attempts_through_a_run_and_the_mcp_server(
    live: LiveServer, fake_llm: FakeOpenAI, canaries: list[Path]
) -> None:
    watched = [*canaries, CONFIG]
    before = _hash(watched)
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Run the code", "tool": "python_exec"}]}),
            json.dumps({"code": escape_code(canaries)}),
            "Done.",
            "Done.",
        ]
    )
    token = live.token("alice", "acme", scopes=["exec:code"])
    with httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        _, frames = stream_run(c, c.post("/v1/threads").json()["thread_id"], "Run my code")
    result = [f.data["data"] for f in frames if f.data["type"] == "tool_result"]
    assert len(result) == 1, [f.data for f in frames if f.data["type"] == "tool_error"]
    results = json.loads(result[0]["result"]["stdout"])
    assert not _check(results), _check(results)
    assert _hash(watched) == before


@pytest.mark.asyncio
async def test_shm_fill_stops_at_its_cap(figure: Callable[[str, str], None]) -> None:
    want_mb = scaled(64, 2048)
    limits = LIMITS.model_copy(update={"shm_mb": 16, "fsize_mb": want_mb, "wall_s": 60.0})
    code = (
        "import os\n"
        "n = 0\n"
        "try:\n"
        "    with open('/dev/shm/fill', 'wb') as f:\n"
        f"        for _ in range({want_mb}):\n"
        "            f.write(b'x' * 2**20); f.flush(); n += 1\n"
        "except OSError as e:\n"
        "    print('stopped', e.errno)\n"
        "print(n)\n"
    )
    out = await run_python(code, limits)
    figure("sandbox", f"/dev/shm fill of {want_mb} MB: {out.stdout.split()} (cap 16 MB)")
    assert out.stdout.split() == ["stopped", "28", str(15)] or out.stdout.split() == [
        "stopped",
        "28",
        "16",
    ], out


@pytest.mark.asyncio
async def test_memory_limit_holds_across_processes(figure: Callable[[str, str], None]) -> None:
    n, mb, limit = scaled((3, 150, 256), (4, 700, 1024))
    limits = LIMITS.model_copy(update={"memory_mb": limit, "wall_s": 60.0})
    code = f"""
import os, select, signal, time
r, w = os.pipe()
kids = []
for _ in range({n}):
    pid = os.fork()
    if pid == 0:
        x = b"x" * ({mb} * 2**20)
        os.write(w, b"1")
        signal.pause()
    kids.append(pid)
held, deadline = 0, time.monotonic() + 20
while held < {n} and select.select([r], [], [], max(0, deadline - time.monotonic()))[0]:
    held += len(os.read(r, 16))
print(held)
"""
    out = await run_python(code, limits)
    figure(
        "sandbox", f"{n} processes x {mb} MB under memory_mb={limit}: {out.killed or out.stdout}"
    )
    assert out.killed == f"memory limit of {limit} MB", out


@pytest.mark.asyncio
@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "uid-pool"])
async def test_a_jail_full_of_sleepers_does_not_starve_another(cgroups: bool) -> None:
    nproc = scaled(16, 64)
    limits = LIMITS.model_copy(update={"nproc": nproc, "wall_s": 60.0, "cgroups": cgroups})
    sleepers = "import os, time\nwhile True:\n    try:\n        pid = os.fork()\n"
    sleepers += "    except BlockingIOError:\n        break\n    if pid == 0:\n"
    sleepers += "        time.sleep(120)\n        os._exit(0)\ntime.sleep(120)\n"
    full = asyncio.ensure_future(run_python(sleepers, limits))
    try:
        deadline = time.monotonic() + 30
        while len(_uid_processes(limits.uid)) < nproc - 1 and not full.done():
            assert time.monotonic() < deadline, len(_uid_processes(limits.uid))
            await asyncio.sleep(0.05)
        assert not full.done(), full.result()
        other = await run_python("print('still runs')", limits)
        assert (other.stdout, other.error, other.killed) == ("still runs\n", None, None), other
    finally:
        full.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await full


@pytest.mark.asyncio
async def test_ptrace_userns_mount_keyctl_and_bpf_are_denied() -> None:
    code = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    ctypes.set_errno(0)
    rc = getattr(libc, name)(*args)
    return "ok" if rc >= 0 else errno.errorcode[ctypes.get_errno()]
print("ptrace", call("ptrace", 0, 0, 0, 0))
print("unshare user", call("unshare", 0x10000000))
print("unshare mount", call("unshare", 0x00020000))
print("mount", call("mount", b"none", b"/tmp", b"tmpfs", 0, None))
print("keyctl", call("syscall", 250, 1, 0))
print("bpf", call("syscall", 321, 0, 0, 0))
print("clone3", call("syscall", 435, 0, 0))
"""
    out = await run_python(code, LIMITS)
    assert out.stdout.splitlines() == [
        "ptrace EPERM",
        "unshare user EPERM",
        "unshare mount EPERM",
        "mount EPERM",
        "keyctl EPERM",
        "bpf EPERM",
        "clone3 ENOSYS",
    ], out
