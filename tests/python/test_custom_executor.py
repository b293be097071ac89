"""Custom executors end to end: pymesos' MesosSchedulerDriver launches tasks whose
`executor` is a Python program built on pymesos' MesosExecutorDriver, which the agent starts
and which talks to it over the v1 executor HTTP API (`/api/v1/executor`).

Checks what a framework author relies on: the executor is started with the MESOS_*
variables and subscribes; its TASK_RUNNING / TASK_FINISHED reach the scheduler with the
executor's id; messages go both ways; a KILL reaches the executor, which reports
TASK_KILLED; when the executor exits, its remaining task fails with
REASON_EXECUTOR_TERMINATED and the scheduler hears executorLost with the exit status. Also
the endpoint's bad-input answers. Every wait is bounded.
"""

import base64
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time

from conftest import free_port, http_get, tessera_bin

from mesos_clients import scalar

EXECUTOR_ID = "pyexec"
TIMEOUT_S = 60

EXECUTOR_PROGRAM = textwrap.dedent(
    """
    import os, sys, threading, time
    from pymesos import MesosExecutorDriver, Executor, encode_data, decode_data

    class Exec(Executor):
        def launchTask(self, driver, task):
            tid = task["task_id"]
            def run():
                driver.sendStatusUpdate({"task_id": tid, "state": "TASK_RUNNING",
                                         "message": "endpoint " + os.environ["MESOS_AGENT_ENDPOINT"]})
                if task["name"] == "finish":
                    driver.sendFrameworkMessage(encode_data(("hello from " + tid["value"]).encode()))
                    driver.sendStatusUpdate({"task_id": tid, "state": "TASK_FINISHED",
                                             "message": "done in " + os.environ["MESOS_SANDBOX"]})
            threading.Thread(target=run, daemon=True).start()

        def killTask(self, driver, task_id):
            driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED",
                                     "message": "killed by the executor"})

        def frameworkMessage(self, driver, message):
            data = decode_data(message)
            if data == b"exit":
                time.sleep(0.5)
                os._exit(3)
            if data == b"pid":
                driver.sendFrameworkMessage(encode_data(b"pid:%d" % os.getpid()))
                return
            driver.sendFrameworkMessage(encode_data(b"echo:" + data))

    MesosExecutorDriver(Exec()).run()
    """
)


def resources(cpus, mem):
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


class Sched:
    def __init__(self, addr):
        from pymesos import MesosSchedulerDriver, Scheduler

        events = self.events = queue.Queue()
        self.backlog = []

        class S(Scheduler):
            def resourceOffers(self, driver, offers):
                events.put(("offers", offers))

            def statusUpdate(self, driver, status):
                events.put(("update", dict(status)))

            def frameworkMessage(self, driver, executor_id, agent_id, data):
                events.put(("message", (executor_id["value"], agent_id["value"], data)))

            def executorLost(self, driver, executor_id, agent_id, status):
                events.put(("executor_lost", (executor_id["value"], status)))

            def error(self, driver, message):
                events.put(("error", message))

        framework = {"user": "root", "name": "custom-executor-test", "hostname": "localhost"}
        self.driver = MesosSchedulerDriver(S(), framework, addr, timeout=30)
        self.driver.start()

    def wait(self, what, pred, timeout=TIMEOUT_S):
        """The first event of kind `what` matching `pred`, including ones that arrived while
        an earlier wait looked for something else (they are kept, in order)."""
        for i, (kind, payload) in enumerate(self.backlog):
            if kind == what and pred(payload):
                del self.backlog[i]
                return payload
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kind, payload = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if kind == "error":
                raise AssertionError(f"scheduler got ERROR: {payload}")
            if kind == "offers" and what != "offers":
                for o in payload:
                    self.driver.declineOffer(o["id"], {"refuse_seconds": 1})
                continue
            if kind == what and pred(payload):
                return payload
            self.backlog.append((kind, payload))
        seen = [(k, str(p)[:160]) for k, p in self.backlog[-15:]]
        raise AssertionError(f"no {what} within {timeout} s; unmatched events: {seen}")

    def stop(self):
        self.driver.stop()
        if self.driver._io_thread is not None:
            self.driver._io_thread.join(15)


def test_pymesos_executor_runs_tasks_messages_and_dies_reported(tessera, tmp_path):
    program = tmp_path / "executor.py"
    program.write_text(EXECUTOR_PROGRAM)
    sched = Sched(tessera.addr)
    try:
        offers = sched.wait(
            "offers",
            lambda os_: any(scalar(o["resources"], "cpus") >= 0.5 and scalar(o["resources"], "mem") >= 200
                            for o in os_),
        )
        offer = next(o for o in offers
                     if scalar(o["resources"], "cpus") >= 0.5 and scalar(o["resources"], "mem") >= 200)
        agent = offer["agent_id"]["value"]
        executor = {
            "executor_id": {"value": EXECUTOR_ID},
            "name": "pymesos test executor",
            "command": {"value": f"{sys.executable} {program}"},
            "resources": resources(0.1, 64),
        }

        def task(tid, name):
            return {"name": name, "task_id": {"value": tid}, "agent_id": {"value": agent},
                    "resources": resources(0.1, 32), "executor": executor}

        sched.driver.launchTasks(offer["id"], [task("t-finish", "finish"), task("t-wait", "wait"),
                                               task("t-orphan", "wait")])

        def update(tid, state):
            return sched.wait("update", lambda s: s["task_id"]["value"] == tid and s["state"] == state)

        running = update("t-finish", "TASK_RUNNING")
        assert running["executor_id"]["value"] == EXECUTOR_ID, running
        assert running.get("source") == "SOURCE_EXECUTOR", running
        assert running["message"].startswith("endpoint "), running
        finished = update("t-finish", "TASK_FINISHED")
        assert "/executors/pyexec/runs/" in finished["message"], finished

        ex, ag, data = sched.wait("message", lambda m: base64.b64decode(m[2]).startswith(b"hello"))
        assert (ex, ag) == (EXECUTOR_ID, agent)
        assert base64.b64decode(data) == b"hello from t-finish"

        sched.driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": agent},
                                          base64.b64encode(b"ping").decode())
        _, _, echo = sched.wait("message", lambda m: base64.b64decode(m[2]).startswith(b"echo:"))
        assert base64.b64decode(echo) == b"echo:ping"

        update("t-wait", "TASK_RUNNING")
        update("t-orphan", "TASK_RUNNING")
        sched.driver.killTask({"value": "t-wait"})
        killed = update("t-wait", "TASK_KILLED")
        assert killed["message"] == "killed by the executor", killed

        sched.driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": agent},
                                          base64.b64encode(b"exit").decode())
        orphan = update("t-orphan", "TASK_FAILED")
        assert orphan.get("reason") == "REASON_EXECUTOR_TERMINATED", orphan
        assert "status 3" in orphan.get("message", ""), orphan
        lost = sched.wait("executor_lost", lambda e: e[0] == EXECUTOR_ID)
        assert lost[1] == 3, lost
    finally:
        sched.stop()


def post(addr, body, content_type="application/json"):
    """POST /api/v1/executor on `addr` (http.client: no Content-Type unless given)."""
    conn = http.client.HTTPConnection(addr, timeout=10)
    try:
        headers = {} if content_type is None else {"Content-Type": content_type}
        conn.request("POST", "/api/v1/executor", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_executor_endpoint_refuses_bad_calls(tessera):
    deadline = time.monotonic() + TIMEOUT_S
    agents = []
    while not agents and time.monotonic() < deadline:
        agents = tessera.get_json("/master/slaves")["slaves"]
        time.sleep(0.1)
    assert agents, f"no agent registered within {TIMEOUT_S} s"
    url = agents[0]["pid"].split("@", 1)[1]  # slave(1)@IP:PORT
    ids = {"framework_id": {"value": "no-such-framework"}, "executor_id": {"value": "nope"}}

    status, body = post(url, b"{}", content_type=None)
    assert status == 400 and "Content-Type" in body, (status, body)
    status, body = post(url, b"{}", content_type="text/plain")
    assert status == 415, (status, body)
    status, body = post(url, b"{not json")
    assert status == 400 and "parse" in body.lower(), (status, body)
    status, body = post(url, json.dumps({"type": "SUBSCRIBE", **ids}).encode())
    assert status == 400 and "executor_id" in body and "not running" in body, (status, body)
    update = {"type": "UPDATE", **ids,
              "update": {"status": {"task_id": {"value": "t"}, "state": "TASK_RUNNING"}}}
    status, body = post(url, json.dumps(update).encode())
    assert status == 400 and "update.status.uuid" in body, (status, body)
    update["update"]["status"]["uuid"] = base64.b64encode(bytes(16)).decode()
    update["update"]["status"]["state"] = "TASK_STAGING"
    status, body = post(url, json.dumps(update).encode())
    assert status == 400 and "TASK_STAGING" in body, (status, body)


def start(args, log, env):
    out = open(log, "ab")
    return subprocess.Popen([str(tessera_bin())] + args, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)


def wait_http(addr, path, ok, what):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, body = http_get(addr, path)
            if status == 200 and ok(body):
                return body
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen within {TIMEOUT_S} s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)


def test_a_custom_executor_survives_an_agent_sigkill(tmp_path):
    """`tessera master` + `tessera agent` on fixed ports; the agent is SIGKILLed while a
    pymesos executor runs a task, and restarted on the same work dir and port: the executor
    (same process) subscribes again, answers messages, and a kill reaches it."""
    program = tmp_path / "executor.py"
    program.write_text(EXECUTOR_PROGRAM)
    master_addr = f"127.0.0.1:{free_port()}"
    agent_http = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, NO_COLOR="1", TESSERA_LOG="info",
               TESSERA_SCHEDULER_HEARTBEAT_INTERVAL="1s")
    log = tmp_path / "cluster.log"
    master = start(["master", "--listen", master_addr, "--work-dir", str(tmp_path / "master"),
                    "--no-batch"], log, env)
    agent_args = ["agent", "--master", master_addr, "--work-dir", str(tmp_path / "agent"),
                  "--http-listen", agent_http, "--resources", "cpus:2;mem:1024"]
    agent = start(agent_args, log, env)
    sched = None
    try:
        wait_http(master_addr, "/master/slaves", lambda b: len(json.loads(b)["slaves"]) == 1,
                  "the agent registered")
        sched = Sched(master_addr)
        offer = sched.wait("offers", lambda os_: len(os_) > 0)[0]
        agent_id = offer["agent_id"]["value"]
        executor = {"executor_id": {"value": EXECUTOR_ID},
                    "command": {"value": f"{sys.executable} {program}"},
                    "resources": resources(0.1, 64)}
        sched.driver.launchTasks(offer["id"], [{
            "name": "wait", "task_id": {"value": "t-long"}, "agent_id": {"value": agent_id},
            "resources": resources(0.1, 32), "executor": executor}])
        sched.wait("update", lambda s: s["task_id"]["value"] == "t-long"
                   and s["state"] == "TASK_RUNNING")
        sched.driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": agent_id},
                                          base64.b64encode(b"pid").decode())
        _, _, before = sched.wait("message", lambda m: base64.b64decode(m[2]).startswith(b"pid:"))

        agent.send_signal(signal.SIGKILL)
        agent.wait(20)
        agent = start(agent_args, log, env)
        # The executor reconnects every 2 s; once it has, messages reach it again.
        deadline = time.monotonic() + TIMEOUT_S
        after = None
        while after is None and time.monotonic() < deadline:
            sched.driver.sendFrameworkMessage({"value": EXECUTOR_ID}, {"value": agent_id},
                                              base64.b64encode(b"pid").decode())
            try:
                _, _, after = sched.wait(
                    "message", lambda m: base64.b64decode(m[2]).startswith(b"pid:"), timeout=3)
            except AssertionError:
                pass
        assert after is not None, "the executor never answered after the agent restarted"
        assert base64.b64decode(after) == base64.b64decode(before), (
            "a different executor process answered: it was not the one re-attached")

        sched.driver.killTask({"value": "t-long"})
        killed = sched.wait("update", lambda s: s["task_id"]["value"] == "t-long"
                            and s["state"] == "TASK_KILLED")
        assert killed["message"] == "killed by the executor", killed
    except Exception:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        if sched is not None:
            sched.stop()
        stop(agent)
        stop(master)
