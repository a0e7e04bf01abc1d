"""A real multi-process Ray cluster on this machine: `ray start --head` and more nodes (`ray start --address`),
each a process tree of its own, with token authentication on, for the tests and the cluster benchmark.

Every node is a `ray start --block` process started in a session of its own, so this module stops exactly the
processes it started (a raylet's workers leave its process group but not its session), never another user's
Ray as `ray stop` would. Every port is a free one picked here, so two clusters on one machine do not collide;
each node has `--num-cpus` CPUs (1 by default) and a small object store.

Nodes are reached as a client would reach them: `client_address` (`ray://`, through the head's client server)
or `gcs_address` (a driver on a node of the cluster), with `env` (the auth mode and the token) in the client's
environment. A head restart takes the other nodes with it (without GCS fault tolerance a raylet does not join a
new GCS), as a head pod's restart does under KubeRay: `restart` starts them all again on the same ports.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from storage.embedded_s3 import free_ports

STARTED = "Ray runtime started."
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB; chunk results are small
WORKER_PORTS = 24  # worker processes a node may have at once (actors, idle workers, replacements)


class RayClusterError(RuntimeError):
    """A node did not start; the message holds the tail of its `ray start` log."""


def _ray_binary() -> str:
    beside_python = Path(sys.executable).parent / "ray"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("ray")
    if found is None:
        raise RayClusterError("the `ray` command was not found beside this Python or on PATH: install ray")
    return found


def _session_processes(sid: int) -> list[int]:
    """Every live process in session `sid` (the `ray start` process and all it started, workers included); not
    zombies, which wait for a parent (or an init) to reap them and can be killed no further."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            if state != "Z" and os.getsid(int(entry.name)) == sid:
                found.append(int(entry.name))
    return found


def unused_ports(count: int, taken: set[int]) -> list[int]:
    """``count`` ports free now and not in ``taken``, which they join. ``free_ports`` releases its ports when it
    returns, so a later call may hand one out again: a node's worker port once came back as the head's dashboard
    port, and Ray refused to start the head."""
    ports = [p for p in free_ports(count + len(taken)) if p not in taken][:count]
    taken.update(ports)
    return ports


@dataclass(frozen=True)
class NodePorts:
    """The ports one node listens on; a node started again reuses them."""

    node_manager: int
    object_manager: int
    dashboard_agent: int
    dashboard_agent_grpc: int
    runtime_env_agent: int
    metrics: int
    workers: tuple[int, ...]

    @classmethod
    def pick(cls, taken: set[int]) -> NodePorts:
        node_manager, object_manager, agent, agent_grpc, runtime_env, metrics, *workers = unused_ports(
            6 + WORKER_PORTS, taken
        )
        return cls(node_manager, object_manager, agent, agent_grpc, runtime_env, metrics, tuple(workers))

    def args(self) -> list[str]:
        return [
            f"--node-manager-port={self.node_manager}",
            f"--object-manager-port={self.object_manager}",
            f"--dashboard-agent-listen-port={self.dashboard_agent}",
            f"--dashboard-agent-grpc-port={self.dashboard_agent_grpc}",
            f"--runtime-env-agent-port={self.runtime_env_agent}",
            f"--metrics-export-port={self.metrics}",
            f"--worker-port-list={','.join(map(str, self.workers))}",
        ]


@dataclass(frozen=True)
class HeadPorts:
    gcs: int
    client: int
    dashboard: int

    @classmethod
    def pick(cls, taken: set[int]) -> HeadPorts:
        gcs, client, dashboard = unused_ports(3, taken)
        return cls(gcs, client, dashboard)


@dataclass
class RayNode:
    """One running `ray start --block` and everything it started (its session)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    log_start: int  # where this start's lines begin in `log` (a node started again appends to it)
    ports: NodePorts

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole node at once, as a lost machine or an OOM-killed pod looks to the rest of the cluster."""
        sid = self.process.pid
        for _ in range(50):  # a process may be forking as the others die: repeat until none is left
            pids = _session_processes(sid)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclass
class LocalRayCluster:
    """`with LocalRayCluster(nodes=2) as cluster:` then `cluster.client_address`, `cluster.env`, `cluster.kill(...)`.

    `root` holds each node's `--temp-dir` and logs; it must be short, since Ray's Unix socket paths under it are
    limited to 107 bytes (a fresh directory in /tmp by default, removed on exit)."""

    nodes: int = 2
    num_cpus: int = 1
    root: Path | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    startup_timeout_s: float = 90.0
    head: RayNode | None = field(default=None, init=False)
    workers: list[RayNode] = field(default_factory=list, init=False)
    _taken_ports: set[int] = field(default_factory=set, init=False)
    _head_ports: HeadPorts = field(init=False)
    _owns_root: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"a cluster needs at least its head node, got nodes={self.nodes}")
        self._head_ports = HeadPorts.pick(self._taken_ports)
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
            self._owns_root = True
        if len(str(self.root)) > 40:
            raise ValueError(
                f"root {self.root} is {len(str(self.root))} characters: Ray's socket paths under it would pass the "
                "107-byte limit; use a short directory such as one from tempfile.mkdtemp(dir='/tmp')"
            )

    @property
    def env(self) -> dict[str, str]:
        """What a client's (or a node's) environment needs to pass the cluster's token authentication."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self._head_ports.gcs}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self._head_ports.client}"

    def start(self) -> LocalRayCluster:
        self.head = self._start_head(NodePorts.pick(self._taken_ports))
        for _ in range(self.nodes - 1):
            self.add_node()
        return self

    def add_node(self, ports: NodePorts | None = None) -> RayNode:
        index = len(self.workers) + 1
        node = self._start(
            f"w{index}",
            ["--address", self.gcs_address],
            ports or NodePorts.pick(self._taken_ports),
        )
        self.workers.append(node)
        return node

    def kill(self, node: RayNode) -> None:
        node.kill()
        if node in self.workers:
            self.workers.remove(node)

    def restart(self) -> None:
        """Kill every node (the head first), then start the head and as many other nodes on the same ports."""
        assert self.head is not None, "start the cluster first"
        head, workers = self.head, list(self.workers)
        head.kill()
        for node in workers:
            self.kill(node)
        self.head = self._start_head(head.ports)
        for node in workers:
            self.add_node(node.ports)

    def stop(self) -> None:
        for node in [*self.workers, *([self.head] if self.head else [])]:
            node.kill()
        self.workers, self.head = [], None

    def _start_head(self, ports: NodePorts) -> RayNode:
        head = self._head_ports
        node = self._start(
            "h",
            [
                "--head",
                f"--port={head.gcs}",
                f"--ray-client-server-port={head.client}",
                "--include-dashboard=false",
                f"--dashboard-port={head.dashboard}",  # a headless dashboard runs all the same
            ],
            ports,
        )
        self._wait_for_port(head.client, node)
        return node

    def _start(self, name: str, role: list[str], ports: NodePorts) -> RayNode:
        assert self.root is not None
        temp_dir = self.root / name
        temp_dir.mkdir(exist_ok=True)
        log = self.root / f"{name}.log"
        log_start = log.stat().st_size if log.exists() else 0
        command = [
            _ray_binary(),
            "start",
            "--block",
            *role,
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={temp_dir}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
            *ports.args(),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | self.env
        # The client server forks a server per client from a process busy with gRPC; gRPC's fork handlers then
        # crash that child before it runs (ray-project/ray#63202). It execs at once, so it needs no fork support.
        env["GRPC_ENABLE_FORK_SUPPORT"] = "false"
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        node = RayNode(name, process, log, log_start, ports)
        self._wait_for_start(node)
        return node

    def _wait_for_start(self, node: RayNode) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while STARTED not in node.log.read_bytes()[node.log_start :].decode(errors="replace"):
            if not node.alive or time.monotonic() > deadline:
                node.kill()
                raise RayClusterError(f"Ray node {node.name} did not start; its log ends:\n{_tail(node.log)}")
            time.sleep(0.2)

    def _wait_for_port(self, port: int, node: RayNode) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            if not node.alive or time.monotonic() > deadline:
                node.kill()
                raise RayClusterError(f"the Ray client server never listened on {port}; log:\n{_tail(node.log)}")
            time.sleep(0.2)

    def __enter__(self) -> LocalRayCluster:
        try:
            return self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
