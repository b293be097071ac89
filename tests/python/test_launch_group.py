"""LAUNCH_GROUP end to end against `tessera up`, from a plain v1 HTTP client (urllib, JSON).

No Mesos client library speaks LAUNCH_GROUP, so this test is the framework: it subscribes,
reads the RecordIO event stream itself, accepts an offer with a task group of two tasks run
by the default executor, acknowledges every update, and expects both tasks TASK_FINISHED
with `executor_id` naming the group's executor. Every wait is bounded.
"""

import json
import time
import urllib.error
import urllib.request
import uuid

JSON = "application/json"
OFFER_TIMEOUT_S = 30
TASK_TIMEOUT_S = 30
TERMINAL = {
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
    "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN", "TASK_UNREACHABLE",
}


def scalars(cpus, mem):
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


def scalar(resources, name):
    return sum(
        float(r["scalar"]["value"])
        for r in resources or []
        if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR"
    )


class Scheduler:
    """A minimal v1 scheduler: one SUBSCRIBE stream, calls with its Mesos-Stream-Id."""

    def __init__(self, addr, name):
        self.addr = addr
        self.url = f"http://{addr}/api/v1/scheduler"
        body = {"type": "SUBSCRIBE",
                "subscribe": {"framework_info": {"user": "nobody", "name": name}}}
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": JSON, "Accept": JSON},
        )
        # The socket timeout bounds each read; heartbeats come every second (conftest).
        self.stream = urllib.request.urlopen(req, timeout=10)
        assert self.stream.status == 200, self.stream.status
        self.stream_id = self.stream.headers["Mesos-Stream-Id"]
        assert self.stream_id, "SUBSCRIBE answered without Mesos-Stream-Id"
        self.seen = []
        ev = self.event(10)
        assert ev and ev["type"] == "SUBSCRIBED", ev
        self.framework_id = ev["subscribed"]["framework_id"]["value"]

    def record(self):
        """One RecordIO record: `<length>\\n<length bytes>`."""
        digits = b""
        while True:
            c = self.stream.read(1)
            if not c:
                raise AssertionError("the event stream ended")
            if c == b"\n":
                break
            assert c.isdigit(), f"bad RecordIO length byte {c!r} after {digits!r}"
            digits += c
        n = int(digits)
        data = self.stream.read(n)
        assert len(data) == n, f"short record: {len(data)} of {n} bytes"
        return json.loads(data)

    def event(self, timeout):
        """The next event that is not a HEARTBEAT, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.record()
            if ev.get("type") == "HEARTBEAT":
                continue
            self.seen.append(ev)
            if ev.get("type") == "ERROR":
                raise AssertionError(f"master sent ERROR: {ev}")
            return ev
        return None

    def call(self, body):
        body["framework_id"] = {"value": self.framework_id}
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": JSON, "Accept": JSON, "Mesos-Stream-Id": self.stream_id},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def decline(self, offer):
        self.call({"type": "DECLINE",
                   "decline": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 60}}})

    def acknowledge(self, status):
        if not status.get("uuid"):
            return
        code, body = self.call({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}})
        assert code == 202, f"ACKNOWLEDGE answered {code}: {body}"

    def close(self):
        try:
            self.call({"type": "TEARDOWN"})
        finally:
            self.stream.close()


def test_launch_group_of_two_tasks_finishes(tessera):
    s = Scheduler(tessera.addr, f"pytest-launch-group-{uuid.uuid4().hex[:8]}")
    try:
        run_group(s, tessera)
    finally:
        s.close()


def run_group(s, tessera):
    executor_cpus, executor_mem = 0.1, 32
    task_cpus, task_mem = 0.1, 32
    need_cpus = executor_cpus + 2 * task_cpus
    need_mem = executor_mem + 2 * task_mem

    def fits(o):
        return scalar(o["resources"], "cpus") >= need_cpus and scalar(o["resources"], "mem") >= need_mem

    offer = None
    deadline = time.monotonic() + OFFER_TIMEOUT_S
    while offer is None:
        ev = s.event(deadline - time.monotonic())
        assert ev is not None, f"no fitting offer within {OFFER_TIMEOUT_S} s; events: {s.seen[-10:]}"
        if ev["type"] != "OFFERS":
            continue
        for o in ev["offers"]["offers"]:
            if offer is None and fits(o):
                offer = o
            else:
                s.decline(o)
    agent_id = offer["agent_id"]["value"]

    suffix = uuid.uuid4().hex[:8]
    executor_id = f"group-exec-{suffix}"
    task_ids = [f"group-task-{i}-{suffix}" for i in (1, 2)]
    tasks = [
        {
            "name": tid,
            "task_id": {"value": tid},
            "agent_id": {"value": agent_id},
            "resources": scalars(task_cpus, task_mem),
            "command": {"value": "echo hello from $MESOS_TASK_ID in $MESOS_SANDBOX", "shell": True},
        }
        for tid in task_ids
    ]
    accept = {
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{
                "type": "LAUNCH_GROUP",
                "launch_group": {
                    "executor": {
                        "type": "DEFAULT",
                        "executor_id": {"value": executor_id},
                        "framework_id": {"value": s.framework_id},
                        "resources": scalars(executor_cpus, executor_mem),
                    },
                    "task_group": {"tasks": tasks},
                },
            }],
            "filters": {"refuse_seconds": 1},
        },
    }
    code, body = s.call(accept)
    assert code == 202, f"ACCEPT answered {code}: {body}"

    states = {tid: [] for tid in task_ids}
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while not all(st and st[-1] == "TASK_FINISHED" for st in states.values()):
        ev = s.event(deadline - time.monotonic())
        assert ev is not None, (
            f"both tasks not TASK_FINISHED within {TASK_TIMEOUT_S} s: {states}; "
            f"last events: {s.seen[-10:]}"
        )
        if ev["type"] == "OFFERS":
            for o in ev["offers"]["offers"]:
                s.decline(o)
            continue
        if ev["type"] != "UPDATE":
            continue
        status = ev["update"]["status"]
        tid = status["task_id"]["value"]
        assert tid in states, f"update for an unknown task: {status}"
        s.acknowledge(status)
        state = status["state"]
        states[tid].append(state)
        assert status.get("executor_id", {}).get("value") == executor_id, (
            f"the update names the group's executor: {status}"
        )
        assert status.get("agent_id", {}).get("value") == agent_id, status
        if state in TERMINAL and state != "TASK_FINISHED":
            raise AssertionError(f"task {tid} ended {state}, expected TASK_FINISHED: {status}")
    for tid, st in states.items():
        assert set(st) <= {"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"}, (tid, st)

    # The master lists the finished tasks with their executor.
    state = tessera.get_json("/master/state")
    fw = next(f for f in state["frameworks"] if f["id"] == s.framework_id)
    listed = {t["id"]: t for t in fw["tasks"] + fw["completed_tasks"]}
    for tid in task_ids:
        assert tid in listed, f"{tid} not in /master/state: {fw}"
        assert listed[tid]["executor_id"] == executor_id, listed[tid]
