"""Cell claims: the lock-file protocol that lets several processes share one result store.

A process claims a cell before it trains it by creating ``<record>.claim`` (beside the
record, ``<id>-<hash>.claim``) with ``O_CREAT | O_EXCL``: exactly one process succeeds,
on a local disk and on NFSv3+. The file holds JSON ``{host, pidns, pid, started, token}``;
while the cell trains, a daemon thread touches it every ``heartbeat_s`` (its mtime is the
claim's heartbeat). The claim is removed after the record is written, so a process that
sees the claim disappear finds the record.

A claim is **stale**, and is taken over, when

* its process is gone: same host and pid namespace, and that pid is not alive (or is a
  zombie, or is this very process but not a claim it holds) - detected at once;
* or its heartbeat is older than ``stale_after_s`` (any host: a node that died, a process
  that hangs) - ``$FER_BENCH_CLAIM_STALE_S``, default 600 s;
* or it is empty or unreadable (killed between create and write) and older than
  ``EMPTY_GRACE_S``.

Taking over is serialised by a second ``O_EXCL`` file (``<claim>.takeover``): the taker
re-reads the claim under it and removes it only if it is still the very claim it judged
stale (same token and heartbeat), so two processes that both see a stale claim never both
end up holding the cell. A process that finds a live claim polls (``$FER_BENCH_CLAIM_POLL_S``,
default 2 s) until it is released or stale, at most ``$FER_BENCH_CLAIM_WAIT_S`` (default
24 h); then ``ClaimTimeout`` (a ``CellSkipped``: the plugin skips that test and the grid
goes on; the other process's record is read on the next run).

``kill -9`` at any moment leaves at worst a stale claim (or an empty one, or a stale
takeover file), never a half-written record: records go through ``fileio``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fer_bench.errors import CellSkipped

CLAIM_SUFFIX = ".claim"
TAKEOVER_SUFFIX = ".takeover"
STALE_ENV, WAIT_ENV, POLL_ENV = "FER_BENCH_CLAIM_STALE_S", "FER_BENCH_CLAIM_WAIT_S", "FER_BENCH_CLAIM_POLL_S"
DEFAULT_STALE_S, DEFAULT_WAIT_S, DEFAULT_POLL_S = 600.0, 24 * 3600.0, 2.0
#: An empty / unreadable claim (its writer died between create and write) is stale after this.
EMPTY_GRACE_S = 30.0
#: A takeover file older than this belongs to a taker that died mid-takeover.
TAKEOVER_GRACE_S = 60.0

_HELD: set[str] = set()          # tokens of the claims this process holds or is creating
_HELD_LOCK = threading.Lock()


class ClaimTimeout(CellSkipped):
    """Waited ``wait_s`` for a cell another live process is training."""


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"${name}: expected seconds, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"${name}: must be > 0, got {text!r}")
    return value


@dataclass(frozen=True)
class ClaimSettings:
    """Timing of the protocol (seconds); ``from_env`` reads the ``$FER_BENCH_CLAIM_*`` values."""

    stale_after_s: float = DEFAULT_STALE_S
    wait_s: float = DEFAULT_WAIT_S
    poll_s: float = DEFAULT_POLL_S

    @property
    def heartbeat_s(self) -> float:
        return max(0.05, min(30.0, self.stale_after_s / 10))

    @classmethod
    def from_env(cls) -> ClaimSettings:
        return cls(_env_seconds(STALE_ENV, DEFAULT_STALE_S), _env_seconds(WAIT_ENV, DEFAULT_WAIT_S),
                   _env_seconds(POLL_ENV, DEFAULT_POLL_S))


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


HOST, PIDNS = socket.gethostname(), _pid_namespace()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@dataclass(frozen=True)
class ClaimInfo:
    """What a claim file says, and its heartbeat (mtime)."""

    path: Path
    host: str
    pidns: str
    pid: int
    started: str
    token: str
    mtime: float

    @property
    def readable(self) -> bool:
        return bool(self.token)

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.mtime)

    def describe(self) -> str:
        if not self.readable:
            return f"an unreadable claim ({self.path.name})"
        return (f"{self.host} pid {self.pid} since {self.started} "
                f"(last heartbeat {self.age_s():.0f}s ago)")

    def stale_reason(self, settings: ClaimSettings, now: float | None = None) -> str | None:
        """Why this claim is stale, or None while its holder may still be working."""
        age = self.age_s(now)
        if not self.readable:
            return f"empty claim {age:.0f}s old" if age > EMPTY_GRACE_S else None
        if self.host == HOST and self.pidns == PIDNS:
            if not pid_alive(self.pid):
                return f"process {self.pid} on {self.host} is gone"
            if self.pid == os.getpid():
                with _HELD_LOCK:
                    if self.token not in _HELD:
                        return f"left over by this process ({self.pid})"
        if age > settings.stale_after_s:
            return f"no heartbeat for {age:.0f}s (limit {settings.stale_after_s:.0f}s)"
        return None


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim at ``path``; None when there is none. Empty/garbled -> ``readable`` False."""
    try:
        mtime = path.stat().st_mtime
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return ClaimInfo(path, str(data["host"]), str(data.get("pidns", "")), int(data["pid"]),
                         str(data["started"]), str(data["token"]), mtime)
    except (ValueError, KeyError, TypeError):
        return ClaimInfo(path, "", "", 0, "", "", mtime)


class HeldClaim:
    """A claim this process holds; ``release`` removes it (only if it is still ours)."""

    def __init__(self, path: Path, token: str, settings: ClaimSettings) -> None:
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(settings.heartbeat_s,),
                                        name=f"claim-heartbeat {path.name}", daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                warnings.warn(f"claim {self.path} vanished while held (taken over as stale?)",
                              stacklevel=1)
                return
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        info = read_claim(self.path)
        if info is not None and info.token == self.token:
            self.path.unlink(missing_ok=True)
        with _HELD_LOCK:
            _HELD.discard(self.token)


def _try_create(path: Path, settings: ClaimSettings) -> HeldClaim | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    with _HELD_LOCK:                # registered first: a thread of this process reading the
        _HELD.add(token)            # new claim never takes it for a leftover
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except BaseException as exc:
        with _HELD_LOCK:
            _HELD.discard(token)
        if isinstance(exc, FileExistsError):
            return None
        raise
    body = {"host": HOST, "pidns": PIDNS, "pid": os.getpid(), "token": token,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        os.write(fd, json.dumps(body).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return HeldClaim(path, token, settings)


def _take_over(info: ClaimInfo, reason: str) -> None:
    """Remove the stale claim ``info`` unless it changed since it was judged."""
    mutex = info.path.with_name(info.path.name + TAKEOVER_SUFFIX)
    try:
        fd = os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        try:
            if time.time() - mutex.stat().st_mtime > TAKEOVER_GRACE_S:
                mutex.unlink(missing_ok=True)        # its taker died mid-takeover
        except FileNotFoundError:
            pass
        return
    os.close(fd)
    try:
        again = read_claim(info.path)
        if again is not None and (again.token, again.mtime) == (info.token, info.mtime):
            warnings.warn(f"taking over the stale claim on {info.path.name}: {reason} "
                          f"({info.describe()})", stacklevel=3)
            info.path.unlink(missing_ok=True)
    finally:
        mutex.unlink(missing_ok=True)


def acquire(path: Path, settings: ClaimSettings, *, what: str = "",
            check: Callable[[], None] | None = None) -> tuple[HeldClaim, bool]:
    """Claim ``path``: (held claim, whether another live process held it first and we waited).

    Waits while a live process holds it; takes a stale one over; raises ``ClaimTimeout``
    after ``settings.wait_s``. ``check`` is called before every wait and may raise to stop
    waiting (the store passes ``training.preempt.check``: SIGTERM stops a wait at once).
    """
    deadline = time.monotonic() + settings.wait_s
    waited = False
    while True:
        held = _try_create(path, settings)
        if held is not None:
            return held, waited
        info = read_claim(path)
        if info is None:
            continue                                   # released just now: try again
        reason = info.stale_reason(settings)
        if reason is not None:
            _take_over(info, reason)
            continue
        if time.monotonic() >= deadline:
            raise ClaimTimeout(f"{what or path.name} is being trained by {info.describe()}; "
                               f"waited {settings.wait_s:.0f}s (${WAIT_ENV}); run again later "
                               f"to read its result from the store")
        if check is not None:
            check()
        waited = True
        time.sleep(min(settings.poll_s, max(0.0, deadline - time.monotonic())) or 0.01)
