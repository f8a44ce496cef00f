"""Test hosts in Linux network namespaces: a partition that is a real network fault.

A ``Network`` is a bridge in the root namespace (the servers' host: PostgreSQL and Redis listen on
the bridge's address, and the test process reaches them there) plus one namespace per worker host,
joined to the bridge by a veth pair. ``cut(host)`` sets the host's bridge port down: its packets
are dropped, nothing is reset, so its TCP connections stall (retransmitting with backoff) exactly
as across a failed switch; ``heal(host)`` sets it up again. Nothing else changes, so the host's
connections resume where they were.

Names carry this process's pid and a random token: parallel runs never collide, and a run that
died without cleaning up (SIGKILL) is swept by the next one. Needs root and iproute2 (``ip``);
``unavailable()`` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

_PREFIX = "rwacc"  # namespaces: rwacc-<pid>-<token>-<host>; links: rw<token><b|index>[p]


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (this run is not root)"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip`, which is not installed"
    probe = f"{_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}-probe"
    try:
        ip("netns", "add", probe)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns add` failed: {exc}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str
    port_link: str  # the veth end on the bridge, in the root namespace

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host (in its network namespace; same files, users and processes)."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Network:
    token: str
    bridge: str
    server_address: str
    subnet: str
    hosts: dict[str, Host]

    def cut(self, host: str) -> None:
        ip("link", "set", self.hosts[host].port_link, "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self.hosts[host].port_link, "up")

    def pids(self, host: str) -> set[int]:
        """The processes running on ``host`` now."""
        return {int(p) for p in ip("netns", "pids", self.hosts[host].netns).split()}


@contextlib.contextmanager
def network(host_names: tuple[str, ...]) -> Iterator[Network]:
    """A bridge and one namespace per host, torn down afterwards whatever happened."""
    sweep_stale()
    token = secrets.token_hex(3)
    subnet = _free_subnet()
    addresses = [str(a) for a in ipaddress.ip_network(subnet).hosts()]
    bridge = f"rw{token}b"
    net = Network(token, bridge, addresses[0], subnet, {})
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{addresses[0]}/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i, name in enumerate(host_names, 1):
            host = Host(name, f"{_PREFIX}-{os.getpid()}-{token}-{name}", addresses[i], f"rw{token}{i}")
            net.hosts[name] = host
            ip("netns", "add", host.netns)
            ip("link", "add", host.port_link, "type", "veth", "peer", "name", f"{host.port_link}p")
            ip("link", "set", f"{host.port_link}p", "netns", host.netns)
            ip("link", "set", host.port_link, "master", bridge)
            ip("link", "set", host.port_link, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", f"{host.port_link}p")
            ip("-n", host.netns, "link", "set", f"{host.port_link}p", "up")
        yield net
    finally:
        _remove(token)


def sweep_stale() -> None:
    """Remove the namespaces and bridges of runs whose process is gone (killed before cleaning up)."""
    for line in ip("netns", "list", check=False).splitlines():
        parts = line.split()[0].split("-") if line.strip() else []
        if len(parts) < 4 or parts[0] != _PREFIX or not parts[1].isdigit():
            continue
        if not _alive(int(parts[1])):
            _remove(parts[2])


def _remove(token: str) -> None:
    """Delete the run's namespaces, its veth pairs and its bridge (deleting one end of a pair deletes both)."""
    for line in ip("-o", "link", "show", check=False).splitlines():
        name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        if name.startswith(f"rw{token}"):
            ip("link", "del", name, check=False)
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(f"{_PREFIX}-") and name.split("-")[2:3] == [token]:
            ip("netns", "del", name, check=False)


def _free_subnet() -> str:
    """A /24 in 10.0.0.0/8 that no route of this machine overlaps (another run's bridge included)."""
    routes = [line.split()[0] for line in ip("-4", "route", "show", "table", "all").splitlines() if line.strip()]
    taken = [ipaddress.ip_network(r, strict=False) for r in routes if r[0].isdigit()]
    rng = random.Random()
    for _ in range(100):
        candidate = ipaddress.ip_network(f"10.{rng.randint(64, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise NetnsError("no free /24 in 10.0.0.0/8 for a test network")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
