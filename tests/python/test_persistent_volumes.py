"""Persistent volumes with a real Mesos client library (pymesos 0.3.15) against `tessera up`.

The framework (role `eng`) accepts one offer with RESERVE + CREATE + LAUNCH in a single
`driver.acceptOffers(..., operations)`: the task writes into the new volume. A later offer
shows the volume (`disk.persistence`, `disk.volume`); a second task using it reads the data
back; DESTROY then deletes the volume's directory on the agent. Every wait is bounded.
"""

import time
import uuid

import pytest

import mesos_clients
from mesos_clients import scalar

ROLE = "eng"
OFFER_TIMEOUT_S = 30
TASK_TIMEOUT_S = 30
DISK_MB = 64


@pytest.fixture
def pymesos_eng(tessera):
    adapter = mesos_clients.make("pymesos", tessera.addr, "pytest-persistent-volumes")
    adapter.framework_extra = {"role": ROLE}
    yield adapter
    try:
        adapter.stop()
    except Exception:  # noqa: BLE001 - the test's own failure matters more
        pass


def reserved_disk(amount):
    return {"name": "disk", "type": "SCALAR", "scalar": {"value": amount},
            "reservations": [{"type": "DYNAMIC", "role": ROLE}]}


def volume(persistence_id, amount):
    r = reserved_disk(amount)
    r["disk"] = {"persistence": {"id": persistence_id},
                 "volume": {"container_path": "data", "mode": "RW"}}
    return r


def task(task_id, agent_id, command, extra):
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
            extra,
        ],
        "command": {"value": command, "shell": True},
    }


def offers_until(client, what, predicate, timeout=OFFER_TIMEOUT_S):
    """The first offer matching predicate; other offers are declined at once (no filter)."""
    found = []

    def pick(ev):
        if ev[0] != "offers":
            return False
        for o in ev[1]:
            if not found and predicate(o):
                found.append(o)
            else:
                client.driver.declineOffer(o["id"], {"refuse_seconds": 0})
        return bool(found)

    client.wait_for(what, pick, timeout)
    return found[0]


def decline_offers(client):
    def on_other(ev):
        if ev[0] == "offers":
            for o in ev[1]:
                client.driver.declineOffer(o["id"], {"refuse_seconds": 0})
    return on_other


def terminal(client, task_id):
    """The terminal update of task_id; offers meanwhile are declined (a volume alone is not
    offered, so the cpus and mem must not stay held)."""
    ev = client.wait_for(
        f"a terminal update of {task_id}",
        lambda e: e[0] == "update" and e[1]["task_id"]["value"] == task_id
        and e[1]["state"] not in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"),
        TASK_TIMEOUT_S,
        on_other=decline_offers(client),
    )
    return ev[1]


def volume_dirs(tessera, persistence_id):
    return list(tessera.work_dir.rglob(f"volumes/roles/{ROLE}/{persistence_id}"))


def test_reserve_create_launch_then_share_data_then_destroy(tessera, pymesos_eng):
    client = pymesos_eng
    client.start()
    client.wait_subscribed()
    pid = f"vol-{uuid.uuid4().hex[:8]}"

    offer = offers_until(
        client, "an offer with disk",
        lambda o: scalar(o["resources"], "disk") >= DISK_MB
        and scalar(o["resources"], "cpus") >= 0.1 and scalar(o["resources"], "mem") >= 32,
    )
    agent_id = offer["agent_id"]["value"]
    ops = [
        {"type": "RESERVE", "reserve": {"resources": [reserved_disk(DISK_MB)]}},
        {"type": "CREATE", "create": {"volumes": [volume(pid, DISK_MB)]}},
        {"type": "LAUNCH", "launch": {"task_infos": [
            task("writer", agent_id, "echo shared > data/f", volume(pid, DISK_MB))]}},
    ]
    client.driver.acceptOffers([offer["id"]], ops, {"refuse_seconds": 0})
    status = terminal(client, "writer")
    assert status["state"] == "TASK_FINISHED", status
    dirs = volume_dirs(tessera, pid)
    assert len(dirs) == 1, f"one volume directory in the Mesos layout, got {dirs}"
    assert (dirs[0] / "f").read_text() == "shared\n"

    # The volume comes back in an offer from the same agent, with its disk info.
    def has_volume(o):
        return o["agent_id"]["value"] == agent_id and any(
            r.get("disk", {}).get("persistence", {}).get("id") == pid for r in o["resources"])

    offer = offers_until(client, f"an offer with volume {pid}", has_volume)
    vol = next(r for r in offer["resources"]
               if r.get("disk", {}).get("persistence", {}).get("id") == pid)
    assert vol["disk"]["volume"] == {"container_path": "data", "mode": "RW"}, vol
    assert scalar([vol], "disk") == DISK_MB
    client.driver.acceptOffers([offer["id"]], [
        {"type": "LAUNCH", "launch": {"task_infos": [
            task("reader", agent_id, "grep -qx shared data/f", vol)]}},
    ], {"refuse_seconds": 0})
    status = terminal(client, "reader")
    assert status["state"] == "TASK_FINISHED", f"the second task did not read the data: {status}"

    # DESTROY: the master gives the disk back and the agent deletes the data.
    offer = offers_until(client, f"the volume {pid} offered again", has_volume)
    vol = next(r for r in offer["resources"]
               if r.get("disk", {}).get("persistence", {}).get("id") == pid)
    client.driver.acceptOffers(
        [offer["id"]], [{"type": "DESTROY", "destroy": {"volumes": [vol]}}],
        {"refuse_seconds": 0})
    deadline = time.monotonic() + TASK_TIMEOUT_S
    while volume_dirs(tessera, pid):
        assert time.monotonic() < deadline, f"{volume_dirs(tessera, pid)} still there"
        time.sleep(0.1)
