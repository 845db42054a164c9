"""wasi:io/poll@0.2.9: pollables over readiness sources, polled on a real OS poller.

A readiness source is any object with:
    poll_ready() -> bool          non-blocking; may do work (a TLS stream pumps its raw input here)
    wait_on() -> Wait             what to wait for while it is not ready
"""

from __future__ import annotations

import select
import time
from typing import Any

from ...component.linker import HostInterface
from ...component.values import Trap
from ...records import Record


class Wait(Record):
    _fields = ("read_fds", "write_fds", "deadline_ns", "also")

    def __init__(self, read_fds: tuple[int, ...] = (), write_fds: tuple[int, ...] = (),
                 deadline_ns: int | None = None, also: tuple[Any, ...] = ()):
        self.read_fds = read_fds
        self.write_fds = write_fds
        self.deadline_ns = deadline_ns  # on time.monotonic_ns()
        # other sources to wait on (a TLS stream waits on the raw stream it reads from)
        self.also = also


class AlwaysReady:
    def poll_ready(self) -> bool:
        return True

    def wait_on(self) -> Wait:
        return Wait()


ALWAYS_READY = AlwaysReady()


class When:
    """A readiness source from two callables: ready when `predicate()` holds, waiting meanwhile on
    what `wait()` names (for the resources whose readiness is a question asked of something else)."""

    __slots__ = ("poll_ready", "wait_on")

    def __init__(self, predicate: Any, wait: Any):
        self.poll_ready = predicate
        self.wait_on = wait


class Deadline:
    def __init__(self, deadline_ns: int):
        self.deadline_ns = deadline_ns

    def poll_ready(self) -> bool:
        return time.monotonic_ns() >= self.deadline_ns

    def wait_on(self) -> Wait:
        return Wait(deadline_ns=self.deadline_ns)


class Pollable:
    """The `pollable` resource."""

    def __init__(self, source: Any):
        self.source = source

    def ready(self) -> bool:
        return bool(self.source.poll_ready())

    def block(self) -> None:
        wait_any([self.source])


def _collect(source: Any, rd: set, wr: set, deadlines: list, depth: int = 0) -> None:
    w = source.wait_on()
    rd.update(w.read_fds)
    wr.update(w.write_fds)
    if w.deadline_ns is not None:
        deadlines.append(w.deadline_ns)
    if depth < 8:
        for inner in w.also:
            _collect(inner, rd, wr, deadlines, depth + 1)


def wait_any(sources: list[Any]) -> list[int]:
    """Blocks until at least one source is ready; returns the indices of the ready ones."""
    while True:
        ready = [i for i, s in enumerate(sources) if s.poll_ready()]
        if ready:
            return ready
        rd: set[int] = set()
        wr: set[int] = set()
        deadlines: list[int] = []
        for s in sources:
            _collect(s, rd, wr, deadlines)
        timeout_ms: float | None = None
        if deadlines:
            timeout_ms = max(0.0, (min(deadlines) - time.monotonic_ns()) / 1e6)
        if not rd and not wr and timeout_ms is None:
            raise Trap("poll would block forever: no pollable can become ready")
        poller = select.poll()
        for fd in rd | wr:
            poller.register(fd, (select.POLLIN if fd in rd else 0) | (select.POLLOUT if fd in wr else 0))
        # round up so a deadline is never polled a hair early and spun on
        poller.poll(None if timeout_ms is None else int(timeout_ms + 0.999))


class Poll(HostInterface):
    wit = "wasi:io/poll@0.2.9"
    resources = {"pollable": Pollable}

    def __init__(self, ctx: Any = None):
        self.ctx = ctx

    def poll(self, in_: list[Pollable]) -> list[int]:
        if not in_:
            raise Trap("poll called with an empty list of pollables")
        return wait_any([p.source for p in in_])
