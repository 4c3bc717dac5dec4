"""Per-jail limits of the code sandbox (practice 9): one cgroup per jail, else a uid per jail.

Which applies is decided once per process, in this order:

* **cgroup v2** (the unified hierarchy has the ``memory`` and ``pids`` controllers available
  under ``SandboxSettings.cgroup_parent``, default the server's own cgroup): a child cgroup per
  jail with ``pids.max``, ``memory.max`` (tmpfs and ``/dev/shm`` pages are charged to it),
  ``memory.swap.max = 0``, ``memory.oom.group = 1`` (an OOM kill ends the whole jail), and CPU
  time read from ``cpu.stat``. Needs a delegated subtree whose ``cgroup.subtree_control`` can
  enable ``memory`` and ``pids`` (a cgroup holding processes cannot, except the root).
* **cgroup v1** (``pids``, ``memory`` and ``cpuacct`` hierarchies writable, as on this kind of
  machine): the same limits with ``pids.max``, ``memory.limit_in_bytes`` (and ``memsw`` where
  swap is accounted) and ``cpuacct.usage``. An OOM kill hits one process; the host sees it
  (``oom_kill`` in ``memory.oom_control``, read every 0.2 s) and kills the rest of the jail.
* **No writable cgroup, running as root**: each concurrent jail takes its own uid from a pool
  (``uid .. uid + uid_pool - 1``, claimed with ``flock`` so several server processes share the
  pool), so ``RLIMIT_NPROC`` counts that jail alone; CPU time and resident memory of the uid's
  processes are summed from ``/proc`` every 0.2 s and the jail is killed when over.
  ``/tmp``, ``/sandbox`` and ``/dev/shm`` stay capped by their tmpfs sizes.
* **Neither**: only the per-process rlimits, and ``RLIMIT_NPROC`` counts the one uid every jail
  shares (one jail can then exhaust it for all).

In every mode CPU time is also watched per jail: the host reads the jail's usage and kills the
jail at ``cpu_s``, sleeping between reads as long as the jail's CPUs need to reach the limit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import SandboxSettings

_COUNTER = itertools.count()
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class JailLimits:
    """The per-jail limits of one call: its cgroups (if any) and the uid it runs as."""

    uid: int
    mode: str
    cgroups: dict[str, Path] = field(default_factory=dict)
    lock_fd: int | None = None

    def enter(self) -> None:
        """In the jail's first process, before exec: move it into the jail's cgroups."""
        pid = str(os.getpid())
        for cg in self.cgroups.values():
            with open(cg / "cgroup.procs", "w") as f:
                f.write(pid)

    def cpu_seconds(self) -> float:
        """CPU time used by the jail so far (all its processes, live and exited)."""
        if self.mode == "v2":
            for line in (self.cgroups["v2"] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return 0.0
        if self.mode == "v1":
            return int((self.cgroups["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        if self.mode == "uid":
            return sum(cpu for cpu, _ in _uid_usage(self.uid).values())
        return 0.0

    def resident_mb(self) -> float:
        """Resident memory of the jail's processes (the ``uid`` mode's own accounting)."""
        return sum(rss for _, rss in _uid_usage(self.uid).values()) / 2**20

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the jail at its memory limit."""
        name = "memory.events" if self.mode == "v2" else "memory.oom_control"
        if self.mode not in ("v1", "v2"):
            return False
        cg = self.cgroups["v2" if self.mode == "v2" else "memory"]
        with contextlib.suppress(OSError):
            for line in (cg / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def kill(self) -> None:
        """SIGKILL every process of the jail."""
        if self.mode == "v2" and (self.cgroups["v2"] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.cgroups["v2"] / "cgroup.kill").write_text("1")
            return
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def release(self, within_s: float = 5.0) -> None:
        """Kill what is left of the jail and remove its cgroups (or free its uid)."""
        deadline = time.monotonic() + within_s
        while self._pids() and time.monotonic() < deadline:
            self.kill()
            time.sleep(0.005)
        for cg in self.cgroups.values():
            while True:
                try:
                    cg.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        _LEFT.append(cg)
                        break
                    time.sleep(0.005)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def _pids(self) -> list[int]:
        if self.mode in ("v1", "v2"):
            pids: set[int] = set()
            for cg in self.cgroups.values():
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in (cg / "cgroup.procs").read_text().split())
            return sorted(pids)
        if self.mode == "uid":
            return sorted(_uid_usage(self.uid))
        return []


# cgroups that could not be removed in time (a process stuck in the kernel); retried later.
_LEFT: list[Path] = []


@functools.cache
def _v1_mounts() -> dict[Path, list[str]]:
    """Cgroup v1 mount points and their controllers, from ``/proc/self/mountinfo``."""
    mounts: dict[Path, list[str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = right.split()[:3]
            if fstype == "cgroup":
                names = [o.removeprefix("name=") for o in options.split(",")]
                mounts[Path(left.split()[4])] = names
    return mounts


@functools.cache
def _v2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return Path(left.split()[4])
    return None


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller (``""`` for the v2 hierarchy)."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            own[name.removeprefix("name=")] = path
    return own


def _base(mount: Path, own: str, parent: str) -> Path:
    return mount / (parent or own).lstrip("/")


def _v2_base(parent: str) -> Path | None:
    mount = _v2_mount()
    if mount is None:
        return None
    base = _base(mount, _own_cgroups().get("", "/"), parent)
    try:
        available = (base / "cgroup.controllers").read_text().split()
        if not {"memory", "pids"} <= set(available):
            return None
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        missing = {"memory", "pids", "cpu"} & set(available) - enabled
        if missing:
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))
    except OSError:
        return None
    return base


def _v1_bases(parent: str) -> dict[str, Path] | None:
    own = _own_cgroups()
    bases: dict[str, Path] = {}
    for controller in ("pids", "memory", "cpuacct"):
        mount = next((m for m, names in _v1_mounts().items() if controller in names), None)
        if mount is None or controller not in own:
            return None
        bases[controller] = _base(mount, own[controller], parent)
    return bases


@functools.cache
def _mode(cgroups: bool, parent: str) -> str:
    """``v2``, ``v1``, ``uid`` or ``none``: the first that works here (probed once)."""
    if cgroups:
        probe = f"keel-probe-{os.getpid()}"
        base2 = _v2_base(parent)
        if base2 is not None and _try_mkdir([base2 / probe]):
            return "v2"
        bases1 = _v1_bases(parent)
        if bases1 is not None and _try_mkdir([b / probe for b in bases1.values()]):
            return "v1"
    return "uid" if os.geteuid() == 0 else "none"


def _try_mkdir(paths: list[Path]) -> bool:
    made: list[Path] = []
    try:
        for p in paths:
            p.mkdir()
            made.append(p)
        return True
    except OSError:
        return False
    finally:
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()


def mode(limits: SandboxSettings) -> str:
    """Which per-jail limits apply under ``limits`` on this machine (see the module docstring)."""
    return _mode(limits.cgroups, limits.cgroup_parent)


def claim(limits: SandboxSettings) -> JailLimits:
    """Set up the limits of one new jail; ``release()`` it after the call."""
    for cg in list(_LEFT):
        with contextlib.suppress(OSError):
            cg.rmdir()
            _LEFT.remove(cg)
    how = mode(limits)
    name = f"keel-jail-{os.getpid()}-{next(_COUNTER)}"
    mem = limits.memory_mb * 2**20
    if how == "v2":
        base = _v2_base(limits.cgroup_parent)
        assert base is not None
        cg = base / name
        cg.mkdir()
        jail = JailLimits(limits.uid, how, {"v2": cg})
        try:
            (cg / "pids.max").write_text(str(limits.nproc))
            (cg / "memory.max").write_text(str(mem))
            for f, v in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                if (cg / f).exists():
                    (cg / f).write_text(v)
        except BaseException:
            jail.release()
            raise
        return jail
    if how == "v1":
        bases = _v1_bases(limits.cgroup_parent)
        assert bases is not None
        jail = JailLimits(limits.uid, how)
        try:
            for controller, base in bases.items():
                cg = base / name
                cg.mkdir()
                jail.cgroups[controller] = cg
                if controller == "pids":
                    (cg / "pids.max").write_text(str(limits.nproc))
                elif controller == "memory":
                    (cg / "memory.limit_in_bytes").write_text(str(mem))
                    if (cg / "memory.memsw.limit_in_bytes").exists():
                        (cg / "memory.memsw.limit_in_bytes").write_text(str(mem))
        except BaseException:
            jail.release()
            raise
        return jail
    if how == "uid":
        uid, fd = _claim_uid(limits)
        return JailLimits(uid, how, lock_fd=fd)
    return JailLimits(limits.uid, how)


def _claim_uid(limits: SandboxSettings) -> tuple[int, int]:
    """A uid of the pool no other jail (of any process) holds, and the lock that holds it."""
    folder = private_dir(f"keel-sandbox-uids-{os.geteuid()}")
    for slot in range(limits.uid_pool):
        fd = os.open(folder / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return limits.uid + slot, fd
    raise RuntimeError(f"all {limits.uid_pool} sandbox uids are in use")


def private_dir(name: str) -> Path:
    """``$TMPDIR/<name>``, a directory only this user can write, created safely.

    A path someone else created first (a symlink, another owner, group- or world-writable) is
    refused with ``PermissionError`` rather than used; the temp dir's sticky bit stops others
    from replacing it once made.
    """
    import tempfile

    path = Path(tempfile.gettempdir()) / name
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    if not is_private(path):
        raise PermissionError(f"{path} is not a private directory of uid {os.geteuid()}")
    return path


def is_private(path: Path) -> bool:
    """Whether ``path`` itself (not a symlink) is this user's directory no one else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _uid_usage(uid: int) -> dict[int, tuple[float, int]]:
    """CPU seconds (own and reaped children's) and resident bytes of each process of ``uid``."""
    usage: dict[int, tuple[float, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks = sum(int(x) for x in fields[11:15])
        usage[int(entry.name)] = (ticks / _TICK, int(fields[21]) * _PAGE)
    return usage


@contextlib.contextmanager
def jail_limits(limits: SandboxSettings) -> Iterator[JailLimits]:
    """``claim()`` … ``release()`` around one call."""
    jail = claim(limits)
    try:
        yield jail
    finally:
        jail.release()
