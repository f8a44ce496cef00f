"""CPU seconds per component (process trees), from /proc, so that no process escapes the account.

A snapshot sums, over every live process of a tree, its own CPU time (utime + stime) plus the
CPU time of its children it has already reaped (cutime + cstime). A process that starts and
exits between two snapshots is therefore still counted: once reaped, its time is in its
parent's cutime. The difference of two snapshots is the CPU the tree spent in between
(resolution: one clock tick, 10 ms). Processes are put in a component by a classifier (the
drainer children of a worker are their own component).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) of ``pid``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is the state (field 3 of stat(5)): ppid is field 4, utime..cstime fields 14..17.
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime) / _TICK, (cutime + cstime) / _TICK


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children[st[0]].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass
class Snapshot:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    pids: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def minus(self, earlier: Snapshot) -> dict[str, float]:
        return {k: self.seconds.get(k, 0.0) - earlier.seconds.get(k, 0.0) for k in self.seconds | earlier.seconds}


@dataclass
class Account:
    """Components: name -> root pid; ``classify(pid, component)`` may move a process to another component."""

    roots: dict[str, int]
    classify: Callable[[int, str], str] = lambda pid, component: component
    exclude: set[int] = field(default_factory=set)

    def snapshot(self) -> Snapshot:
        snap = Snapshot()
        for component, root in self.roots.items():
            for pid in tree(root):
                if pid in self.exclude:
                    continue
                st = _stat(pid)
                if st is None:
                    continue
                name = self.classify(pid, component)
                snap.seconds[name] += st[1] + st[2]
                snap.pids[name].add(pid)
        return snap


def own_cpu(pid: int) -> float:
    """CPU seconds of one process (to subtract a helper connection's backend, for instance)."""
    st = _stat(pid)
    return 0.0 if st is None else st[1]


def peak_rss_mb(pids: Iterable[int]) -> float:
    """Sum of VmHWM (peak resident set) of ``pids``, in MB."""
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total
