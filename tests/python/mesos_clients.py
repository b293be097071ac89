"""One small adapter per real Mesos client library (pymesos, mesoshttp) with the same interface.

Each adapter runs the library's driver in its own thread; every callback only puts an event on
`self.events` (a queue.Queue of (kind, payload) tuples):
  ("subscribed", framework_id str)   ("offers", [offer dict])   ("update", TaskStatus dict)
  ("error", message)                 ("failure", dict)          ("ended", reason str)
Tests call the adapter's methods from the test thread and wait on the queue with timeouts
(`next_event`, `wait_for`), never with bare sleeps.
"""

import logging
import queue
import threading
import time

log = logging.getLogger("mesos_clients")

CLIENTS = ["pymesos", "mesoshttp"]


class ClientEnded(AssertionError):
    pass


def scalar(resources, name):
    """Sum of the scalar resource `name` in a Mesos resource list (0.0 when absent)."""
    total = 0.0
    for r in resources or []:
        if r.get("name") == name and r.get("type", "SCALAR") == "SCALAR":
            total += float(r["scalar"]["value"])
    return total


def task_info(task_id, agent_id, command, cpus, mem):
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": {"value": agent_id},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
        ],
        "command": {"value": command, "shell": True},
    }


class Adapter:
    name = "?"

    def __init__(self, addr, framework_name):
        self.addr = addr
        self.framework_name = framework_name
        self.events = queue.Queue()
        self.framework_id = None
        self.framework_extra = {}  # more FrameworkInfo fields (e.g. "role"), set before start()
        self.seen = []  # every event taken off the queue, for failure messages

    # -- waiting -------------------------------------------------------------------------
    def next_event(self, timeout):
        """The next event, or None after `timeout` seconds. Raises if the driver ended."""
        try:
            ev = self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        self.seen.append(ev)
        if ev[0] == "ended":
            raise ClientEnded(f"{self.name}: the driver ended: {ev[1]}")
        if ev[0] == "error":
            raise AssertionError(f"{self.name}: master sent ERROR event: {ev[1]}")
        return ev

    def wait_for(self, what, predicate, timeout, on_other=None):
        """Takes events until predicate(ev) is true; others go to on_other(ev). Fails after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: timed out after {timeout} s waiting for {what}; "
                    f"last events: {summarize(self.seen[-15:])}"
                )
            ev = self.next_event(left)
            if ev is None:
                continue
            if predicate(ev):
                return ev
            if on_other is not None:
                on_other(ev)

    def wait_subscribed(self, timeout=20):
        ev = self.wait_for("SUBSCRIBED", lambda e: e[0] == "subscribed", timeout)
        self.framework_id = ev[1]
        return ev[1]

    # -- calls (implemented per client) ---------------------------------------------------
    def start(self):
        raise NotImplementedError

    def launch(self, offer, tasks, refuse_seconds=None):
        raise NotImplementedError

    def decline(self, offer, refuse_seconds):
        raise NotImplementedError

    def kill(self, task_id, agent_id):
        raise NotImplementedError

    def reconcile(self, tasks):
        """tasks: list of (task_id, agent_id); [] = implicit reconciliation."""
        raise NotImplementedError

    def stop(self, timeout=15):
        """Tears the framework down (TEARDOWN) and waits (bounded) for the driver thread."""
        raise NotImplementedError


def summarize(events):
    out = []
    for kind, payload in events:
        if kind == "offers":
            out.append(f"offers({len(payload)})")
        elif kind == "update":
            out.append(f"update({payload.get('task_id', {}).get('value')}={payload.get('state')})")
        else:
            out.append(f"{kind}({str(payload)[:80]})")
    return ", ".join(out)


# ------------------------------------------------------------------------------------------
class PymesosAdapter(Adapter):
    name = "pymesos"

    def start(self):
        from pymesos import MesosSchedulerDriver, Scheduler

        events = self.events

        class Sched(Scheduler):
            def registered(self, driver, framework_id, master_info):
                events.put(("subscribed", framework_id["value"]))

            def reregistered(self, driver, master_info):
                events.put(("reregistered", master_info))

            def disconnected(self, driver):
                events.put(("disconnected", None))

            def resourceOffers(self, driver, offers):
                events.put(("offers", [dict(o) for o in offers]))

            def statusUpdate(self, driver, status):
                events.put(("update", dict(status)))

            def error(self, driver, message):
                events.put(("error", message))

            def slaveLost(self, driver, agent_id):
                events.put(("failure", {"agent_id": agent_id}))

            def executorLost(self, driver, executor_id, agent_id, status):
                events.put(("failure", {"agent_id": agent_id, "executor_id": executor_id}))

        framework = {"user": "root", "name": self.framework_name, "hostname": "localhost"}
        framework.update(self.framework_extra)
        # timeout bounds every HTTP call the driver makes (default is a day).
        self.driver = MesosSchedulerDriver(Sched(), framework, self.addr, timeout=30)
        self.driver.start()

    def launch(self, offer, tasks, refuse_seconds=None):
        filters = None if refuse_seconds is None else {"refuse_seconds": refuse_seconds}
        self.driver.launchTasks(offer["id"], tasks, filters)

    def decline(self, offer, refuse_seconds):
        self.driver.declineOffer(offer["id"], {"refuse_seconds": refuse_seconds})

    def kill(self, task_id, agent_id):
        self.driver.killTask({"value": task_id})

    def reconcile(self, tasks):
        self.driver.reconcileTasks([{"task_id": {"value": t}} for t, _ in tasks])

    def stop(self, timeout=15):
        driver = getattr(self, "driver", None)
        if driver is None:
            return
        driver.stop()  # the IO thread sends TEARDOWN on its way out
        io = driver._io_thread
        if io is not None:
            io.join(timeout)
            assert not io.is_alive(), f"pymesos IO thread still running {timeout} s after stop()"


# ------------------------------------------------------------------------------------------
class MesoshttpAdapter(Adapter):
    name = "mesoshttp"

    def start(self):
        from mesoshttp.client import MesosClient

        self.offer_objs = {}
        self.driver = None
        self.client = MesosClient(
            mesos_urls=[f"http://{self.addr}"],
            frameworkName=self.framework_name,
            frameworkUser="root",
            max_reconnect=1,
        )
        events = self.events

        def on_subscribed(driver):
            self.driver = driver
            events.put(("subscribed", self.client.frameworkId))

        def on_offers(offers):
            dicts = []
            for o in offers:
                d = o.get_offer()
                self.offer_objs[d["id"]["value"]] = o
                dicts.append(d)
            events.put(("offers", dicts))

        self.client.on(MesosClient.SUBSCRIBED, on_subscribed)
        self.client.on(MesosClient.OFFERS, on_offers)
        self.client.on(MesosClient.UPDATE, lambda u: events.put(("update", u["status"])))
        self.client.on(MesosClient.ERROR, lambda m: events.put(("error", m)))
        self.client.on(MesosClient.FAILURE, lambda f: events.put(("failure", f)))

        def run():
            try:
                res = self.client.register()
                events.put(("ended", f"register() returned {res!r} (see the mesoshttp log lines)"))
            except BaseException as e:  # noqa: BLE001 - reported to the test thread
                events.put(("ended", f"register() raised {e!r}"))

        self.thread = threading.Thread(target=run, name="mesoshttp", daemon=True)
        self.thread.start()

    def _offer(self, offer):
        return self.offer_objs.pop(offer["id"]["value"])

    def launch(self, offer, tasks, refuse_seconds=None):
        options = None if refuse_seconds is None else {"filters": {"refuse_seconds": refuse_seconds}}
        self._offer(offer).accept(tasks, options)

    def decline(self, offer, refuse_seconds):
        self._offer(offer).decline({"filters": {"refuse_seconds": refuse_seconds}})

    def kill(self, task_id, agent_id):
        self.driver.kill(agent_id, task_id)

    def reconcile(self, tasks):
        assert tasks, "mesoshttp cannot send implicit reconciliation (it drops an empty list)"
        self.driver.reconcile(
            [{"task_id": {"value": t}, "agent_id": {"value": a}} for t, a in tasks]
        )

    def stop(self, timeout=15):
        client = getattr(self, "client", None)
        if client is None:
            return
        # register() notices `stop` on the next stream record (heartbeats come every 1 s), then
        # sends TEARDOWN and returns.
        client.tearDown()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), (
            f"mesoshttp register() still running {timeout} s after tearDown() "
            "(no stream record arrived to notice it?)"
        )


def make(name, addr, framework_name):
    return {"pymesos": PymesosAdapter, "mesoshttp": MesoshttpAdapter}[name](addr, framework_name)
