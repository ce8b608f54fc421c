"""Real parts on loopback for the replica tests and benchmark: `ivflake
serve` replicas, HAProxy in front of them with the repo's own config
(deploy/k8s/base/haproxy.cfg, its `server-template` line swapped for
loopback `server` lines), and a client load that counts every error.
The store behind is whatever the replicas' config names (moto in tests).
"""

import concurrent.futures
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time

import urllib3

REPO = pathlib.Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "k8s" / "base" / "haproxy.cfg"
REPLICA_HEADER = "x-ivflake-replica"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds, what):
    """Polls `check` every 50 ms, at most `seconds`; raises naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {seconds} s")


def metric(text: str, name: str, *labels: str) -> float:
    """Sum of the samples of `name` whose labels include every one of `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not re.match(rf"{re.escape(name)}[{{ ]", line):
            continue
        if all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Replica:
    """One `ivflake serve --config CONFIG` on a fixed loopback port, so a
    restart comes back where HAProxy expects it."""

    def __init__(self, binary, config: pathlib.Path, name: str, log_dir: pathlib.Path, extra_args=()):
        self.binary, self.config, self.name = binary, config, name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        self.extra_args = list(extra_args)
        self.proc = None
        self.http = urllib3.PoolManager(maxsize=4)

    def start(self):
        env = dict(os.environ, RUST_LOG="warn")
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}",
             *self.extra_args],
            env=env, stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        try:
            wait_until(self.ready, 60, f"{self.name} ready")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
        try:
            return self.http.request("GET", self.url + "/readyz", timeout=1.0, retries=False).status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def kill(self):
        """SIGKILL: no drain, connections reset mid-request."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout=60):
        """SIGTERM: /readyz turns 503, then the server drains and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metrics(self) -> str:
        return self.http.request("GET", self.url + "/metrics", timeout=5.0).data.decode()

    def store_gets(self) -> float:
        return metric(self.metrics(), "ivflake_store_gets_total")


class Balancer:
    """HAProxy with the repo's config. `balance` replaces the backend's
    algorithm (e.g. "roundrobin", to compare); None keeps the repo's."""

    def __init__(self, replicas, work_dir: pathlib.Path, balance=None, balance_factor=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket_path = work_dir / f"haproxy-{self.port}.sock"
        text = HAPROXY_CFG.read_text()
        servers = "".join(f"    server {r.name} 127.0.0.1:{r.port} check\n" for r in replicas)
        text, n = re.subn(r"^    server-template .*\n", servers, text, flags=re.M)
        assert n == 1, "haproxy.cfg has one server-template line"
        text, n = re.subn(r"^    bind :\d+$", f"    bind 127.0.0.1:{self.port}", text, flags=re.M)
        assert n == 1, "haproxy.cfg has one bind line"
        # The runtime API, to read each server's state.
        text = text.replace("global\n", f"global\n    stats socket {self.socket_path} mode 600 level admin\n", 1)
        if balance:
            text, n = re.subn(r"^    balance .*$", f"    balance {balance}", text, flags=re.M)
            assert n == 1
        if balance_factor:
            text, n = re.subn(r"^    hash-balance-factor \d+$", f"    hash-balance-factor {balance_factor}", text,
                              flags=re.M)
            assert n == 1
        self.cfg = work_dir / f"haproxy-{self.port}.cfg"
        self.cfg.write_text(text)
        self.log = work_dir / f"haproxy-{self.port}.log"
        self.proc = None

    def start(self):
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c: {check.stdout}{check.stderr}")
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=log, stderr=log)
        log.close()
        try:
            wait_until(lambda: self.socket_path.exists(), 10, "haproxy's stats socket")
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict:
        """The backend's rows of `show stat` by server name (and "BACKEND")."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = (dict(zip(header, line.split(","))) for line in lines[1:] if line)
        return {row["svname"]: row for row in rows if row.get("pxname") == "ivflake"}

    def states(self) -> dict:
        """Each server's status as HAProxy sees it now (UP, DOWN, ...)."""
        return {name: row["status"] for name, row in self.stats().items() if name not in ("BACKEND", "FRONTEND")}

    def wait_up(self, names, seconds=20):
        wait_until(lambda: all(self.states().get(n, "").startswith("UP") for n in names), seconds,
                   f"haproxy sees {names} up")

    def wait_down(self, name, seconds=20):
        wait_until(lambda: self.states().get(name, "").startswith(("DOWN", "MAINT")), seconds,
                   f"haproxy sees {name} down")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def search_body(vector, k=10, nprobe=16) -> bytes:
    return json.dumps({"vectors": [list(map(float, vector))], "k": k, "nprobe": nprobe}).encode()


class Load:
    """Client threads sending searches (index name, query vector) through
    one URL until `stop()` or their work runs out. Every failure (a status
    other than 200, a reset, a time-out) is counted and kept; each success
    records its latency, which replica answered and when it was sent."""

    def __init__(self, url, work, clients=8, timeout=30.0, repeat=False):
        self.url, self.work, self.clients, self.timeout, self.repeat = url, work, clients, timeout, repeat
        self.http = urllib3.PoolManager(maxsize=clients)
        self.errors, self.latencies, self.served = [], [], []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pool = None
        self.futures = []

    def _client(self, i):
        items = self.work[i::self.clients]
        while True:
            for index, vector in items:
                if self.stopping.is_set():
                    return
                started, started_at = time.perf_counter(), time.monotonic()
                try:
                    r = self.http.request(
                        "POST", f"{self.url}/v1/indexes/{index}/search", body=search_body(vector),
                        headers={"Content-Type": "application/json"}, timeout=self.timeout, retries=False)
                    ok = r.status == 200
                    problem = None if ok else f"{r.status} {r.data[:300]!r}"
                except Exception as e:  # noqa: BLE001 - every failure is what is counted
                    ok, problem, r = False, repr(e), None
                elapsed = time.perf_counter() - started
                with self.lock:
                    if ok:
                        self.latencies.append(elapsed)
                        self.served.append((index, r.headers.get(REPLICA_HEADER), started_at))
                    else:
                        self.errors.append((index, problem))
            if not self.repeat:
                return

    def start(self):
        self.pool = concurrent.futures.ThreadPoolExecutor(self.clients)
        self.futures = [self.pool.submit(self._client, i) for i in range(self.clients)]
        return self

    def wait(self, seconds):
        done, pending = concurrent.futures.wait(self.futures, timeout=seconds)
        if pending:
            self.stop()
            raise TimeoutError(f"{len(pending)} clients still running after {seconds} s")
        for f in done:
            f.result()
        self.pool.shutdown()
        return self

    def stop(self):
        self.stopping.set()
        concurrent.futures.wait(self.futures, timeout=60)
        self.pool.shutdown()
        return self

    def count(self):
        with self.lock:
            return len(self.latencies) + len(self.errors)


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
