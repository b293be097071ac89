"""Fixtures for the real-client tests: a `tessera up` cluster per test on a free port.

The binary is $TESSERA_BIN, else $CARGO_TARGET_DIR/debug/tessera, else ./target/debug/tessera
(build it with `cargo build -p tessera`; scripts/test-python.sh does).
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
LOG_TAIL_LINES = 80


def tessera_bin() -> Path:
    if os.environ.get("TESSERA_BIN"):
        return Path(os.environ["TESSERA_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "tessera"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(addr: str, path: str, timeout: float = 5.0):
    """GET http://addr/path -> (status, body text). Raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def get_json(addr: str, path: str):
    status, body = http_get(addr, path)
    assert status == 200, f"GET {path} answered {status}: {body[:500]}"
    try:
        return json.loads(body)
    except ValueError as e:
        raise AssertionError(f"GET {path} did not answer JSON ({e}): {body[:500]}") from None


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = ANSI.sub("", path.read_text(errors="replace")).splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text[-lines:])


class Cluster:
    def __init__(self, addr: str, proc: subprocess.Popen, log: Path, work_dir: Path):
        self.addr = addr
        self.proc = proc
        self.log = log
        self.work_dir = work_dir

    def get(self, path: str):
        return http_get(self.addr, path)

    def get_json(self, path: str):
        return get_json(self.addr, path)

    def tail(self) -> str:
        return log_tail(self.log)

    def version(self) -> str:
        """GET /version's "version", checked to be numeric X.Y.Z >= 1.0.0 (clients.md R8)."""
        status, body = self.get("/version")
        assert status == 200, f"GET /version answered {status}: {body[:300]!r}"
        try:
            version = json.loads(body).get("version")
        except (ValueError, AttributeError):
            raise AssertionError(f"GET /version did not answer a JSON object: {body[:300]!r}") from None
        # pymesos int()s every dot-separated part, and changes behaviour below 1.0.0.
        assert isinstance(version, str) and re.fullmatch(r"\d+\.\d+\.\d+", version), (
            f"GET /version 'version' must be numeric X.Y.Z, got {version!r} in {body[:300]!r}"
        )
        assert tuple(int(p) for p in version.split(".")) >= (1, 0, 0), version
        return version


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    cluster = getattr(item, "_tessera_cluster", None)
    if rep.failed and cluster is not None:
        rep.sections.append(
            (f"tessera up log, last {LOG_TAIL_LINES} lines ({cluster.log})", cluster.tail())
        )


@pytest.fixture
def tessera(request, tmp_path):
    """A running `tessera up --agents 2` on 127.0.0.1:<free port>; yields a Cluster."""
    binary = tessera_bin()
    if not binary.exists():
        pytest.fail(
            f"tessera binary not found at {binary}: run `cargo build -p tessera` "
            "(or set TESSERA_BIN)",
            pytrace=False,
        )
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    log = tmp_path / "tessera-up.log"
    env = dict(os.environ)
    env.setdefault("TESSERA_LOG", "info")
    env["NO_COLOR"] = "1"
    # Bounds mesoshttp's one-record delivery lag; also keeps the tests fast.
    env["TESSERA_SCHEDULER_HEARTBEAT_INTERVAL"] = "1s"
    for attempt in range(3):
        addr = f"127.0.0.1:{free_port()}"
        with open(log, "ab") as out:
            out.write(f"== tessera up --listen {addr} (attempt {attempt + 1})\n".encode())
            out.flush()
            proc = subprocess.Popen(
                [str(binary), "up", "--listen", addr, "--agents", "2", "--work-dir", str(work_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=tmp_path,
            )
        cluster = Cluster(addr, proc, log, work_dir)
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if cluster.get("/health")[0] == 200:
                    healthy = True
                    break
            except OSError:
                pass
            time.sleep(0.1)
        if healthy:
            break
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
            pytest.fail(
                f"tessera up on {addr} did not answer GET /health with 200 within "
                f"{HEALTH_TIMEOUT_S} s; log tail:\n{cluster.tail()}",
                pytrace=False,
            )
        # Exited early: retry on another port only if the port was taken meanwhile.
        if "in use" not in cluster.tail().lower() or attempt == 2:
            pytest.fail(
                f"tessera up exited with {proc.returncode} before becoming healthy; "
                f"log tail:\n{cluster.tail()}",
                pytrace=False,
            )
    request.node._tessera_cluster = cluster
    try:
        yield cluster
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
                pytest.fail(
                    f"tessera up did not stop within {STOP_TIMEOUT_S} s of SIGTERM (killed); "
                    f"log tail:\n{cluster.tail()}",
                    pytrace=False,
                )
