"""A local Shoal cluster for the tests: `shoal local up` on a loopback subnet no Rust test uses
(127.250.<pid % 250>.1-3), always brought down again."""

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def shoal_bin() -> str:
    path = os.environ.get("SHOAL_BIN", str(REPO / "target" / "debug" / "shoal"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no shoal binary at {path}: build it (cargo build) or set SHOAL_BIN")
    return path


class Cluster:
    def __init__(self, directory: str, hosts):
        self.dir = directory
        self.hosts = hosts
        self.sites = [f"{h}:8922" for h in hosts]
        self.bin = shoal_bin()
        with open(os.path.join(directory, "cluster.secret")) as f:
            self.secret = f.read().strip()
        # The admin login `shoal local up` generated (no default password exists).
        with open(os.path.join(directory, "admin.password")) as f:
            self.admin_password = f.read().strip()

    def shoal(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run(
            [self.bin, *args, "--dir", self.dir],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise AssertionError(f"shoal {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def sql(self, statement: str) -> str:
        return self.shoal("sql", statement)

    def status(self) -> dict:
        return json.loads(self.shoal("status", "--json"))

    def data_node(self, site: str) -> dict:
        """The status entry of the data node serving at `site` ("host:port")."""
        for n in self.status()["nodes"]:
            if n["mode"] == "datanode" and n["addr"] == site:
                return n
        raise AssertionError(f"no data node at {site}")

    def chunks_not_complete(self) -> list:
        return json.loads(self.shoal("chunks", "--not-complete", "--json"))

    def kill_data_node(self, site: str) -> int:
        """Kills the data node serving at `site` with SIGKILL, then waits until its agent has
        restarted it and its replicas caught up (every chunk COMPLETE), so a next kill never
        leaves a chunk without a live in-sync replica. Returns the killed pid."""
        node = self.data_node(site)
        assert node["state"] == "UP", node
        os.kill(node["pid"], signal.SIGKILL)
        wait_until(
            f"{node['alias']} is restarted",
            lambda: (lambda n: n["state"] == "UP" and n["pid"] not in (0, node["pid"]))(self.data_node(site)),
            timeout=60,
        )
        wait_until("every chunk is COMPLETE", lambda: self.chunks_not_complete() == [], timeout=60)
        return node["pid"]


def wait_until(what: str, cond, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except AssertionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


def processes_of(directory: str) -> list:
    """Live (not zombie) processes whose command line names `directory`."""
    if not os.path.isdir("/proc"):
        return []
    needle = directory.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(needle in a for a in args):
            pids.append(int(entry))
    return pids


def bring_down(binary: str, directory: str) -> None:
    """`shoal local down`, then makes sure nothing of the cluster is left running (a left
    process is killed and reported)."""
    down = subprocess.run([binary, "local", "down", "--dir", directory], capture_output=True, text=True, timeout=120)
    end = time.monotonic() + 20
    while processes_of(directory) and time.monotonic() < end:
        time.sleep(0.2)
    left = processes_of(directory)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left or down.returncode != 0:
        raise AssertionError(
            f"shoal local down ({down.returncode}) left processes {left} running (killed):\n{down.stdout}\n{down.stderr}"
        )


@contextlib.contextmanager
def local_cluster(subnet: str):
    """`shoal local up` on `subnet`.1-3 in a temporary directory; always brought down again."""
    hosts = [f"{subnet}.{i}" for i in (1, 2, 3)]
    with tempfile.TemporaryDirectory(prefix="shoal-pytest-") as tmp:
        directory = os.path.join(tmp, "cluster")
        binary = shoal_bin()
        try:
            up = subprocess.run(
                [binary, "local", "up", "--dir", directory, "--hosts", ",".join(hosts)],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert up.returncode == 0, f"shoal local up failed:\n{up.stdout}\n{up.stderr}"
            yield Cluster(directory, hosts)
        finally:
            bring_down(binary, directory)


@pytest.fixture(scope="session")
def cluster():
    with local_cluster(f"127.250.{os.getpid() % 250}") as c:
        c.sql('CREATE DATABASE "dfs://stock" PARTITIONED BY VALUE(2023.01.01..2023.01.10), ENGINE="TSDB"')
        yield c
