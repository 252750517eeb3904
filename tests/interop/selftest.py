#!/usr/bin/env python3
"""Checks tests/interop/peer.py against itself (Python <-> Python, no Rust involved).

    scripts/setup.sh && .venv/bin/python tests/interop/selftest.py [--url URL] [--json FILE]

Without --url it creates a scratch RabbitMQ vhost (amqp-rpc-selftest-<hex>, via rabbitmqctl)
and deletes it at the end. It spawns one serving peer and calling peers, runs the checks,
prints one line per check and a JSON record of the exceptions exactly as oslo.messaging
raised them (what the Rust interop tests assert against), and exits 1 if a check failed.
Not run by CI: it is the reference run for the peer and for the recorded error details.
"""

import argparse
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")


class PeerProc:
    def __init__(self, url, label, *extra):
        self.label = label
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, PEER, "--url", url, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1)
        self.next_id = 0
        self.pending = {}
        self.lock = threading.Lock()
        self.stray = []
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self.stray.append(line)
                continue
            with self.lock:
                q = self.pending.pop(msg.get("id"), None)
            if q is None:
                self.stray.append(line)
            else:
                q.put(msg)

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, cmd):
        with self.lock:
            self.next_id += 1
            cid = self.next_id
            q = queue.Queue()
            self.pending[cid] = q
        cmd = dict(cmd, id=cid)
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return q

    def request(self, cmd, timeout=30):
        try:
            return self.send(cmd).get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.label}: no response to {cmd} in {timeout}s")

    def ok(self, cmd, timeout=30):
        resp = self.request(cmd, timeout)
        if "ok" not in resp:
            raise AssertionError(f"{self.label}: {cmd.get('cmd')} failed: {resp}")
        return resp["ok"]

    def quit(self):
        if self.proc.poll() is None:
            try:
                self.ok({"cmd": "quit"}, timeout=40)
            except Exception:  # noqa: BLE001
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


def rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, stdout=subprocess.DEVNULL)


class Checks:
    def __init__(self):
        self.failed = []
        self.passed = 0
        self.observed = {}

    def check(self, name, fn):
        t = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name} ({time.monotonic() - t:.2f}s)", flush=True)

    def record(self, name, resp):
        err = dict(resp["error"])
        full = err["message"]
        err["message_first_line"] = full.split("\n", 1)[0]
        err["message_has_traceback"] = "Traceback (most recent call last)" in full
        err["message"] = full if len(full) < 200 else full[:200] + "..."
        if "elapsed" in resp:
            err["elapsed"] = round(resp["elapsed"], 3)
        self.observed[name] = err
        return resp["error"]


def expect_error(resp, cls, module=None):
    assert "error" in resp, f"expected {cls}, got {resp}"
    err = resp["error"]
    assert err["class"] == cls, f"expected class {cls}, got {err}"
    if module is not None:
        assert err["module"] == module, f"expected module {module}, got {err}"
    return err


def run(url, out_json):
    c = Checks()
    t = time.monotonic()
    srv = PeerProc(url, "server-peer")
    cli = PeerProc(url, "client-peer")
    info = srv.ok({"cmd": "info"})
    startup = time.monotonic() - t
    cli.ok({"cmd": "info"})
    print(f"peer versions: {info['versions']}; first answer after {startup:.2f}s", flush=True)
    timings = {"peer_startup_first_answer_s": round(startup, 3)}
    topic = "selftest"

    try:
        t = time.monotonic()
        assert srv.ok({"cmd": "serve", "topic": topic, "server": "s1"}) == "started"
        timings["serve_started_s"] = round(time.monotonic() - t, 3)

        def call(method, args=None, **kw):
            return cli.request(dict({"cmd": "call", "topic": topic, "method": method,
                                     "args": args or {}, "ctxt": {}}, **kw), timeout=40)

        def echo_roundtrip():
            args = {"nested": {"a": [1, 2.5, None, True, {"b": []}], "empty": {}},
                    "unicode": "héllo wörld ✓ 日本語 😀", "big": "x" * (300 * 1024),
                    "neg": -7, "float": 1e-3}
            t = time.monotonic()
            resp = call("echo", args)
            timings["echo_300KiB_call_s"] = round(time.monotonic() - t, 3)
            assert resp.get("ok") == args, f"echo differs: {str(resp)[:300]}"
            log = srv.ok({"cmd": "log", "server": "s1"})
            assert len(log) == 1 and log[0]["method"] == "echo" and log[0]["args"] == args
            assert log[0]["ctxt"] == {"client_timeout": None}, log[0]["ctxt"]
            assert srv.ok({"cmd": "log", "server": "s1"}) == []

        c.check("echo nested/unicode/300KiB", echo_roundtrip)

        def small_call_latency():
            n = 20
            t = time.monotonic()
            for i in range(n):
                assert call("echo", {"i": i}).get("ok") == {"i": i}
            timings["echo_small_call_avg_ms"] = round((time.monotonic() - t) / n * 1000, 2)
            srv.ok({"cmd": "log", "server": "s1"})

        c.check("sequential small calls", small_call_latency)

        def no_such_method():
            err = expect_error(call("no_such_method"), "NoSuchMethod_Remote",
                               "oslo_messaging.rpc.dispatcher_Remote")
            c.record("NoSuchMethod", {"error": err})
            assert err["message"].startswith(
                "Endpoint does not support RPC method no_such_method\n")

        c.check("NoSuchMethod", no_such_method)

        def no_such_method_private():
            err = expect_error(call("_record"), "NoSuchMethod_Remote")
            c.record("NoSuchMethod (private _method)", {"error": err})

        c.check("NoSuchMethod for _-prefixed method", no_such_method_private)

        def unsupported_version():
            err = expect_error(call("echo", version="1.1"), "UnsupportedVersion_Remote",
                               "oslo_messaging.rpc.dispatcher_Remote")
            c.record("UnsupportedVersion (default endpoint, version 1.1)", {"error": err})
            assert err["message"].startswith(
                "Endpoint does not support RPC version 1.1. Attempted method: echo\n")
            err = expect_error(call("echo", namespace="nope"), "UnsupportedVersion_Remote")
            c.record("UnsupportedVersion (unknown namespace)", {"error": err})
            assert err["message"].startswith(
                "Endpoint does not support RPC version 1.0. Attempted method: echo\n")

        c.check("UnsupportedVersion", unsupported_version)

        def value_error():
            resp = call("raise_value_error", {"message": "bad value ✗"})
            err = expect_error(resp, "ValueError", "builtins")
            c.record("ValueError", resp)
            assert err["message"].startswith("bad value ✗\nTraceback (most recent call last):")
            assert "ValueError: bad value ✗" in err["message"]
            assert err["args"] == [err["message"]]

        c.check("raise_value_error -> ValueError", value_error)

        def custom_error():
            resp = call("raise_custom", {"message": "custom ✗", "code": 42})
            err = expect_error(resp, "CustomError_Remote", "interop_errors_Remote")
            c.record("CustomError", resp)
            assert err["message"].startswith("custom ✗\nTraceback")
            assert err["args"] == ["custom ✗"], err["args"]
            assert err["kwargs"] == {"code": 42}, err.get("kwargs")

        c.check("raise_custom -> CustomError_Remote", custom_error)

        def remote_error():
            strict = PeerProc(url, "strict-client", "--no-default-exmods")
            try:
                for method, args, exc_type in (
                        ("raise_custom", {"message": "m", "code": 1}, "CustomError"),
                        ("no_such_method", {}, "NoSuchMethod")):
                    resp = strict.request({"cmd": "call", "topic": topic, "method": method,
                                           "args": args, "ctxt": {}}, timeout=20)
                    err = expect_error(resp, "RemoteError", "oslo_messaging.rpc.client")
                    c.record(f"RemoteError ({exc_type}, module not allowed)", resp)
                    assert err["exc_type"] == exc_type, err
                    assert isinstance(err["traceback"], list), err
                    assert err["message"].startswith(f"Remote error: {exc_type} "), err
                # builtins are always rebuilt
                resp = strict.request({"cmd": "call", "topic": topic,
                                       "method": "raise_value_error",
                                       "args": {"message": "v"}, "ctxt": {}}, timeout=20)
                expect_error(resp, "ValueError", "builtins")
            finally:
                strict.quit()

        c.check("RemoteError when module not allowed", remote_error)

        def calc_versions():
            srv.ok({"cmd": "log", "server": "s1"})  # start from an empty log
            assert call("add", {"x": 2, "y": 3}, namespace="calc", version="1.2")["ok"] == 5
            assert call("pow", {"base": 2, "exp": 10}, namespace="calc",
                        version="1.3")["ok"] == 1024
            assert call("add", {"x": 1, "y": 1}, namespace="calc")["ok"] == 2  # 1.0
            resp = call("add", {"x": 2, "y": 3}, namespace="calc", version="1.4")
            err = expect_error(resp, "UnsupportedVersion_Remote")
            c.record("UnsupportedVersion (calc 1.4)", resp)
            assert err["message"].startswith(
                "Endpoint does not support RPC version 1.4. Attempted method: add\n")
            expect_error(call("add", {"x": 2, "y": 3}, namespace="calc", version="2.0"),
                         "UnsupportedVersion_Remote")
            resp = call("echo", {}, namespace="calc", version="1.2")
            expect_error(resp, "NoSuchMethod_Remote")
            c.record("NoSuchMethod (calc namespace, echo)", resp)
            resp = call("add", {"x": 2, "y": 3})  # no namespace: Default matches, lacks add
            expect_error(resp, "NoSuchMethod_Remote")
            resp = call("add", {"x": 2}, namespace="calc")
            err = expect_error(resp, "TypeError", "builtins")
            c.record("TypeError (missing argument)", resp)
            log = srv.ok({"cmd": "log", "server": "s1"})
            assert [e["method"] for e in log] == ["add", "pow", "add"], log  # TypeError: never entered
            assert log[0]["args"] == {"x": 2, "y": 3}

        c.check("calc namespace/version matrix", calc_versions)

        def context_roundtrip():
            srv.ok({"cmd": "log", "server": "s1"})  # start from an empty log
            ctxt = {"user": "u1", "project_id": "p1", "roles": ["admin", "ü"],
                    "nested": {"k": [1, None]}, "none": None}
            resp = call("context", ctxt=ctxt)
            assert resp["ok"] == dict(ctxt, client_timeout=None), resp
            resp = call("context", ctxt=ctxt, call_monitor_timeout=4)
            assert resp["ok"] == dict(ctxt, client_timeout=4), resp
            resp = call("context", ctxt={}, call_monitor_timeout=2.5)
            c.observed["context with call_monitor_timeout 2.5"] = resp["ok"]
            log = srv.ok({"cmd": "log", "server": "s1"})
            assert log[0]["ctxt"] == dict(ctxt, client_timeout=None), log

        c.check("context round trip + client_timeout", context_roundtrip)

        def missing_topic_timeout():
            t = time.monotonic()
            resp = cli.request({"cmd": "call", "topic": "no-such-topic", "method": "echo",
                                "args": {}, "ctxt": {}, "timeout": 1}, timeout=20)
            took = time.monotonic() - t
            err = expect_error(resp, "MessagingTimeout", "oslo_messaging.exceptions")
            c.record("MessagingTimeout (missing topic, timeout 1)", resp)
            assert err["message"].startswith("Timed out waiting for a reply to message ID ")
            assert 0.9 <= took <= 3.0, took

        c.check("missing topic -> MessagingTimeout after 1s", missing_topic_timeout)

        def server_timeout():
            t = time.monotonic()
            resp = call("sleep", {"seconds": 3}, timeout=1)
            took = time.monotonic() - t
            expect_error(resp, "MessagingTimeout")
            c.record("MessagingTimeout (sleep 3, timeout 1)", resp)
            assert took < 2.5, took
            time.sleep(2.5)  # let the sleeper finish
            srv.ok({"cmd": "log", "server": "s1"})

        c.check("slow server -> MessagingTimeout", server_timeout)

        def call_monitor():
            t = time.monotonic()
            resp = call("sleep", {"seconds": 3}, timeout=10, call_monitor_timeout=2)
            took = time.monotonic() - t
            assert resp.get("ok") == 3, resp
            assert 2.9 <= took < 5, took
            log = srv.ok({"cmd": "log", "server": "s1"})
            assert log[0]["ctxt"]["client_timeout"] == 2, log

        c.check("call_monitor_timeout 2 + sleep 3 + timeout 10 -> ok", call_monitor)

        def call_monitor_overall_timeout():
            # heartbeats keep the call alive, but the overall timeout still applies
            t = time.monotonic()
            resp = call("sleep", {"seconds": 5}, timeout=3, call_monitor_timeout=2)
            took = time.monotonic() - t
            expect_error(resp, "MessagingTimeout")
            assert 2.8 <= took < 4.5, took
            time.sleep(2.5)
            srv.ok({"cmd": "log", "server": "s1"})

        c.check("call_monitor_timeout does not extend timeout", call_monitor_overall_timeout)

        def concurrent_calls():
            slow = cli.send({"cmd": "call", "topic": topic, "method": "sleep",
                             "args": {"seconds": 1.5}, "ctxt": {}})
            fast = cli.send({"cmd": "call", "topic": topic, "method": "echo",
                             "args": {"f": 1}, "ctxt": {}})
            got_fast = fast.get(timeout=10)
            assert got_fast["ok"] == {"f": 1}
            assert slow.empty(), "slow call answered before the fast one"
            log_resp = srv.ok({"cmd": "log", "server": "s1"})  # not blocked by the sleeper
            assert slow.get(timeout=10)["ok"] == 1.5
            assert {e["method"] for e in log_resp} <= {"sleep", "echo"}
            srv.ok({"cmd": "log", "server": "s1"})

        c.check("concurrent calls, out-of-order responses", concurrent_calls)

        def routing_cast_fanout():
            assert srv.ok({"cmd": "serve", "topic": topic, "server": "s2"}) == "started"
            assert call("whoami", server="s1")["ok"] == "s1"
            assert call("whoami", server="s2")["ok"] == "s2"
            names = [call("whoami")["ok"] for _ in range(4)]
            c.observed["round robin whoami x4 (two servers, one peer)"] = names
            assert set(names) == {"s1", "s2"}, names
            srv.ok({"cmd": "log", "server": "s1"})
            srv.ok({"cmd": "log", "server": "s2"})
            assert cli.ok({"cmd": "cast", "topic": topic, "server": "s2", "method": "record",
                           "args": {"n": 1}, "ctxt": {"c": 1}}) is None
            assert cli.ok({"cmd": "cast", "topic": topic, "fanout": True, "method": "record",
                           "args": {"n": 2}, "ctxt": {}}) is None
            log1 = srv.ok({"cmd": "log", "server": "s1", "min": 1, "timeout": 5})
            log2 = srv.ok({"cmd": "log", "server": "s2", "min": 2, "timeout": 5})
            # waiting for more than arrives returns what is there when time is up
            t = time.monotonic()
            assert srv.ok({"cmd": "log", "server": "s1", "min": 1, "timeout": 0.3}) == []
            assert 0.25 <= time.monotonic() - t < 2
            assert [e["args"] for e in log1] == [{"n": 2}], log1
            assert [e["args"] for e in log2] == [{"n": 1}, {"n": 2}], log2
            assert log2[0]["ctxt"] == {"c": 1, "client_timeout": None}, log2
            resp = cli.request({"cmd": "call", "topic": topic, "fanout": True,
                                "method": "echo", "args": {}, "ctxt": {}})
            expect_error(resp, "InvalidTarget")
            c.record("InvalidTarget (call with fanout)", resp)
            assert srv.ok({"cmd": "stop", "server": "s2"}) == "stopped"
            assert call("whoami", server="s1")["ok"] == "s1"
            assert srv.ok({"cmd": "serve", "topic": topic, "server": "s2"}) == "started"
            assert call("whoami", server="s2")["ok"] == "s2"
            assert srv.ok({"cmd": "stop", "server": "s2"}) == "stopped"
            srv.ok({"cmd": "log", "server": "s1"})
            srv.ok({"cmd": "log", "server": "s2"})

        c.check("server routing, round robin, cast, fanout, stop/restart", routing_cast_fanout)

        def ping():
            resp = call("oslo_rpc_server_ping")
            expect_error(resp, "NoSuchMethod_Remote")
            assert srv.ok({"cmd": "serve", "topic": "pingable", "server": "p1",
                           "ping": True}) == "started"
            resp = cli.request({"cmd": "call", "topic": "pingable",
                                "method": "oslo_rpc_server_ping", "args": {}, "ctxt": {}})
            assert resp.get("ok") == "pong", resp
            srv.ok({"cmd": "stop", "server": "p1"})

        c.check("ping endpoint only when enabled", ping)

        def exchange_option():
            assert srv.ok({"cmd": "serve", "topic": topic, "server": "x1",
                           "exchange": "other"}) == "started"
            resp = call("whoami", exchange="other", server="x1")
            assert resp.get("ok") == "x1", resp
            resp = call("whoami", server="x1", timeout=1)  # default exchange: nobody
            expect_error(resp, "MessagingTimeout")
            srv.ok({"cmd": "stop", "server": "x1"})

        c.check("exchange on serve and call", exchange_option)

        def version_cap():
            resp = call("add", {"x": 1, "y": 1}, namespace="calc", version="1.3",
                        version_cap="1.2")
            expect_error(resp, "RPCVersionCapError")
            c.record("RPCVersionCapError (version 1.3, cap 1.2)", resp)

        c.check("version_cap", version_cap)

        # -- notifications (srv listens, cli notifies) -------------------------------------

        def listen(name, topic, **kw):
            targets = kw.pop("targets", None) or [{"topic": topic}]
            assert srv.ok(dict({"cmd": "listen", "name": name, "targets": targets}, **kw)) \
                == "listening"

        def notify(topic, priority="info", event_type="test.event", payload=None, **kw):
            resp = cli.ok(dict({"cmd": "notify", "topics": [topic], "priority": priority,
                                "event_type": event_type, "payload": payload}, **kw))
            assert resp["errors"] == [], resp
            return resp

        def received(name, n, timeout=5, **kw):
            got = srv.ok(dict({"cmd": "received", "name": name, "min": n,
                               "timeout": timeout}, **kw), timeout=timeout + 20)
            return got

        def exactly(name, n, settle=0.5):
            """The notifications of `name`, checking that n arrive and no more."""
            got = received(name, n)["notifications"]
            assert len(got) >= n, f"{name}: {len(got)} of {n}: {got}"
            time.sleep(settle)
            got = received(name, 0)["notifications"]
            assert len(got) == n, f"{name}: {len(got)} instead of {n}: {got}"
            return got

        def stop_listener(name):
            assert srv.ok({"cmd": "stop_listener", "name": name}) == "stopped"

        def notification_roundtrip(driver):
            topic = f"nt-{driver}"
            listen("rt", topic, priorities=["info", "warn", "error"])
            ctxt = {"user": "u1", "project_id": "p1", "roles": ["a"], "n": 3}
            payload = {"id": 3, "nested": {"l": [1, None, "✓"]}}
            resp = notify(topic, "info", "compute.instance.create.end", payload,
                          driver=driver, publisher_id="compute.host1", ctxt=ctxt)
            assert resp["notified"] == 1
            notify(topic, "warning", "w.event", [1, 2], driver=driver)  # warning -> WARN
            notify(topic, "error", "e.event", "text", driver=driver, count=2)
            notify(topic, "debug", "d.event", None, driver=driver)  # not subscribed
            got = exactly("rt", 4)
            c.observed[f"notification received ({driver})"] = got[0]
            by_type = {}
            for n in got:
                by_type.setdefault(n["event_type"], []).append(n)
            assert set(by_type) == {"compute.instance.create.end", "w.event", "e.event"}
            n = by_type["compute.instance.create.end"][0]
            assert n["priority"] == "info" and n["result"] == "handled", n
            assert n["publisher_id"] == "compute.host1", n
            assert n["payload"] == payload, n
            assert n["ctxt"] == dict(ctxt, client_timeout=None), n
            assert set(n["metadata"]) == {"message_id", "timestamp"}, n
            assert len(n["metadata"]["message_id"]) == 36, n
            assert time.strptime(n["metadata"]["timestamp"].split(".")[0],
                                 "%Y-%m-%d %H:%M:%S"), n
            w = by_type["w.event"][0]
            assert w["priority"] == "warn" and w["payload"] == [1, 2], w
            assert w["publisher_id"] is None and w["ctxt"] == {"client_timeout": None}, w
            assert [e["payload"] for e in by_type["e.event"]] == ["text", "text"]
            stop_listener("rt")
            # the debug notification waits in <topic>.debug (the notifier declared it)
            listen("rt-debug", topic, priorities=["debug"])
            got = exactly("rt-debug", 1)
            assert got[0]["event_type"] == "d.event" and got[0]["payload"] is None, got
            stop_listener("rt-debug")

        c.check("notifications messagingv2: Python notifier -> Python listener",
                lambda: notification_roundtrip("messagingv2"))
        c.check("notifications messaging (v1): Python notifier -> Python listener",
                lambda: notification_roundtrip("messaging"))

        def notification_contexts():
            topic = "nt-ctxt"
            listen("ctx", topic)
            ctxt = {"user": "u1", "project_id": "p1", "auth_token": "secret",
                    "request_id": "req-abc"}
            for kind in ("object", "dict", "request_context"):
                notify(topic, event_type=kind, ctxt=ctxt, ctxt_kind=kind)
            got = {n["event_type"]: n["ctxt"] for n in exactly("ctx", 3)}
            c.observed["notification ctxt by ctxt_kind"] = got
            assert got["object"] == dict(ctxt, client_timeout=None), got
            assert got["dict"] == {"client_timeout": None}, got  # oslo drops plain dicts
            rc = got["request_context"]
            assert rc["auth_token"] is None and rc["user"] == "u1", rc  # redacted
            assert rc["project_id"] == "p1" and rc["request_id"] == "req-abc", rc
            stop_listener("ctx")
            resp = cli.request({"cmd": "notify", "topics": [topic], "priority": "info",
                                "event_type": "x", "payload": 1, "ctxt": {},
                                "ctxt_kind": "nope"})
            expect_error(resp, "ValueError")

        c.check("notification context kinds (object, dict, request_context)",
                notification_contexts)

        def notification_topics_exchange():
            listen("t1", "nt-multi-1")
            listen("t2", "nt-multi-2")
            resp = cli.ok({"cmd": "notify", "topics": ["nt-multi-1", "nt-multi-2"],
                           "priority": "info", "event_type": "both", "payload": 1})
            assert resp == {"notified": 1, "errors": []}, resp
            assert [n["event_type"] for n in exactly("t1", 1)] == ["both"]
            assert [n["event_type"] for n in exactly("t2", 1)] == ["both"]
            stop_listener("t1")
            stop_listener("t2")
            # a listener on two exchanges; a notifier on a non-default exchange
            listen("x", None, targets=[{"topic": "nt-x", "exchange": "nt-other"},
                                       {"topic": "nt-x"}])
            notify("nt-x", event_type="other", exchange="nt-other")
            notify("nt-x", event_type="default")
            got = exactly("x", 2)
            assert sorted(n["event_type"] for n in got) == ["default", "other"], got
            stop_listener("x")
            # Queues are named <topic>.<priority> whatever the exchange: a notifier on
            # another exchange declares the same queue and binds it to its exchange, so a
            # listener on the control exchange gets its notifications too.
            listen("x-default-only", "nt-x2")
            notify("nt-x2", event_type="other", exchange="nt-other")
            got = exactly("x-default-only", 1)
            c.observed["listener on (openstack, T) gets a notification sent to "
                       "(nt-other, T)"] = len(got) == 1
            stop_listener("x-default-only")

        c.check("notification topics and exchanges", notification_topics_exchange)

        def notification_pools():
            topic = "nt-pool"
            listen("plain", topic)
            listen("a1", topic, pool="pool-a")
            listen("a2", topic, pool="pool-a")
            listen("b1", topic, pool="pool-b")
            notify(topic, event_type="pooled", count=10)
            assert len(exactly("plain", 10)) == 10
            assert len(exactly("b1", 10)) == 10
            a1 = received("a1", 0)["notifications"]
            a2 = received("a2", 0)["notifications"]
            c.observed["pool of two, 10 notifications"] = [len(a1), len(a2)]
            assert len(a1) + len(a2) == 10 and a1 and a2, (len(a1), len(a2))
            ids = {n["metadata"]["message_id"] for n in a1 + a2}
            assert len(ids) == 10
            for name in ("plain", "a1", "a2", "b1"):
                stop_listener(name)

        c.check("notification pools: shared within a pool, a copy per pool",
                notification_pools)

        def notification_filter():
            topic = "nt-filter"
            listen("f", topic, filter={"event_type": r"compute\.", "publisher_id": "nova-",
                                       "context": {"user": "u1"},
                                       "metadata": {"message_id": "^[0-9a-f-]{36}$"}})
            ok = {"publisher_id": "nova-compute", "ctxt": {"user": "u1"}}
            notify(topic, event_type="compute.instance.create.end", payload=1, **ok)
            notify(topic, event_type="x.compute.y", payload=2, **ok)  # re.match: anchored
            notify(topic, event_type="compute.b", payload=3, publisher_id="glance",
                   ctxt={"user": "u1"})
            notify(topic, event_type="compute.c", payload=4, publisher_id="nova-api",
                   ctxt={"user": "u2"})
            notify(topic, event_type="compute.d", payload=5, publisher_id="nova-api")
            notify(topic, event_type="compute.e", payload=6, publisher_id="nova-api",
                   ctxt={"user": "u1x"})  # prefix match
            got = exactly("f", 2, settle=1.0)
            assert sorted(n["payload"] for n in got) == [1, 6], got
            stop_listener("f")

        c.check("notification filter (re.match on event_type, publisher_id, context)",
                notification_filter)

        def notification_requeue():
            topic = "nt-requeue"
            listen("rq", topic, allow_requeue=True, requeue_first=2)
            notify(topic, event_type="again", payload=1)
            got = exactly("rq", 3)
            assert [n["result"] for n in got] == ["requeue", "requeue", "handled"], got
            assert len({n["metadata"]["message_id"] for n in got}) == 1, got
            stop_listener("rq")
            # without allow_requeue, REQUEUE acks: no redelivery
            listen("no-rq", "nt-requeue-off", requeue_first=1)
            notify("nt-requeue-off", event_type="once")
            got = exactly("no-rq", 1, settle=1.0)
            assert got[0]["result"] == "requeue", got
            stop_listener("no-rq")
            # and the queue is empty afterwards
            listen("no-rq-check", "nt-requeue-off")
            time.sleep(0.5)
            assert received("no-rq-check", 0)["notifications"] == []
            stop_listener("no-rq-check")

        c.check("notification requeue (allow_requeue true / false)", notification_requeue)

        def notification_batch():
            topic = "nt-batch"
            notify(topic, event_type="batched", count=7)  # queued before the listener
            t = time.monotonic()
            listen("b", topic, batch_size=5, batch_timeout=1)
            got = received("b", 7, timeout=10)
            took = time.monotonic() - t
            sizes = sorted(len(b["notifications"]) for b in got["batches"])
            c.observed["batch_size 5, batch_timeout 1, 7 queued: batch sizes"] = sizes
            assert sizes == [2, 5], got["batches"]
            assert all(b["priority"] == "info" and b["result"] == "handled"
                       for b in got["batches"])
            assert len(got["notifications"]) == 7
            assert 0.8 <= took < 5, took  # the 2 wait for the batch timeout
            stop_listener("b")
            # a requeued batch comes back whole
            listen("br", "nt-batch-rq", batch_size=3, batch_timeout=0.5,
                   allow_requeue=True, requeue_first=1)
            notify("nt-batch-rq", event_type="b", count=3)
            got = received("br", 6, timeout=10)
            results = [(b["result"], len(b["notifications"])) for b in got["batches"]]
            c.observed["batch requeue_first 1, 3 notifications"] = results
            assert sum(n for r, n in results if r == "handled") == 3, results
            assert results[0][0] == "requeue", results
            stop_listener("br")
            # clear forgets what was returned
            assert received("br", 0, clear=True)["batches"]
            assert received("br", 0) == {"notifications": [], "batches": []}

        c.check("batch notification listener (size, timeout, requeue)", notification_batch)

        def notification_bad_commands():
            for cmd in ({"cmd": "notify", "priority": "loud", "event_type": "e",
                         "payload": 1},
                        {"cmd": "notify", "driver": "log", "priority": "info",
                         "event_type": "e", "payload": 1},
                        {"cmd": "listen", "name": "bad", "targets": [{"topic": "t"}],
                         "priorities": ["warning"]},
                        {"cmd": "received", "name": "nobody"},
                        {"cmd": "stop_listener", "name": "nobody"}):
                resp = (cli if cmd["cmd"] == "notify" else srv).request(cmd)
                expect_error(resp, "ValueError")
            listen("dup", "nt-dup")
            expect_error(srv.request({"cmd": "listen", "name": "dup",
                                      "targets": [{"topic": "nt-dup"}]}), "ValueError")
            stop_listener("dup")

        c.check("bad notification commands get error responses", notification_bad_commands)

        def bad_commands():
            resp = cli.request({"cmd": "frobnicate"})
            expect_error(resp, "ValueError", "builtins")
            resp = cli.request({"cmd": "stop", "server": "nobody"})
            expect_error(resp, "ValueError")
            resp = srv.request({"cmd": "serve", "topic": topic, "server": "s1"})
            expect_error(resp, "ValueError")
            resp = cli.request({"cmd": "call", "topic": topic, "method": "echo",
                                "args": {}, "ctxt": {}, "version": "x.y"})
            c.record("bad version string in prepare()", resp)
            assert "error" in resp
            # Tracing commands of a peer without --tracing.
            expect_error(cli.request({"cmd": "spans"}), "ValueError")
            expect_error(cli.request({"cmd": "call", "topic": topic, "method": "echo",
                                      "args": {}, "ctxt": {}, "parent_span": "root"}),
                         "ValueError")

        c.check("bad commands get error responses", bad_commands)

        def tracing():
            ts = PeerProc(url, "tracing-server", "--tracing", "--service-name", "py-srv")
            tc = PeerProc(url, "tracing-client", "--tracing")
            try:
                assert ts.ok({"cmd": "spans"}) == []
                ts.ok({"cmd": "serve", "topic": "traced", "server": "ts1"})
                resp = tc.request({"cmd": "call", "topic": "traced", "server": "ts1",
                                   "method": "echo", "args": {"a": 1},
                                   "ctxt": {"request_id": "req-1"},
                                   "parent_span": "client-root"})
                assert resp.get("ok") == {"a": 1}, resp
                producer, root = tc.ok({"cmd": "spans", "min": 2, "timeout": 10})
                consumer, = ts.ok({"cmd": "spans", "min": 1, "timeout": 10})
                c.observed["tracing: call spans (client, server)"] = [root, producer,
                                                                      consumer]
                assert (root["name"], root["kind"], root["parent_span_id"]) == (
                    "client-root", "INTERNAL", None), root
                assert (producer["name"], producer["kind"]) == ("traced.echo",
                                                                "PRODUCER"), producer
                assert producer["parent_span_id"] == root["span_id"], producer
                assert producer["attributes"] == {
                    "messaging.system": "rabbitmq", "messaging.operation": "call",
                    "messaging.destination.name": "traced", "rpc.method": "echo",
                    "openstack.request_id": "req-1"}, producer
                assert (consumer["name"], consumer["kind"]) == ("echo receive",
                                                                "CONSUMER"), consumer
                assert consumer["parent_span_id"] == producer["span_id"], consumer
                assert consumer["parent_is_remote"] is True, consumer
                assert root["trace_id"] == producer["trace_id"] == consumer["trace_id"]
                assert {root["service"], producer["service"]} == {"python-peer"}
                assert consumer["service"] == "py-srv", consumer
                # The endpoint got the W3C trace context of the PRODUCER span.
                entry, = ts.ok({"cmd": "log", "server": "ts1"})
                want = "00-%s-%s-03" % (producer["trace_id"], producer["span_id"])
                assert entry["ctxt"] == {"request_id": "req-1", "traceparent": want,
                                         "client_timeout": None}, entry
                # clear: false keeps them, the default forgets them.
                tc.ok({"cmd": "cast", "topic": "traced", "method": "record", "args": {},
                       "ctxt": {}})
                assert len(tc.ok({"cmd": "spans", "clear": False})) == 1
                assert len(tc.ok({"cmd": "spans"})) == 1
                assert tc.ok({"cmd": "spans"}) == []
                consumer, = ts.ok({"cmd": "spans", "min": 1, "timeout": 10})
                assert consumer["attributes"]["messaging.operation"] == "receive"
                # An untraced caller: the CONSUMER span is a root.
                assert cli.ok({"cmd": "call", "topic": "traced", "method": "whoami",
                               "args": {}, "ctxt": {}}) == "ts1"
                consumer, = ts.ok({"cmd": "spans", "min": 1, "timeout": 10})
                assert consumer["parent_span_id"] is None, consumer
            finally:
                for p in (ts, tc):
                    assert p.quit() == 0 and not p.stray, (p.label, p.stray)

        c.check("tracing: one trace across two --tracing peers", tracing)

        def eof_exits():
            p = PeerProc(url, "eof-peer")
            p.ok({"cmd": "serve", "topic": "eof", "server": "e1"})
            p.proc.stdin.close()
            rc = p.proc.wait(20)
            assert rc == 0, rc

        c.check("EOF on stdin stops and exits 0", eof_exits)

        def no_stray_output():
            for p in (srv, cli):
                assert not p.stray, f"{p.label} wrote non-protocol lines: {p.stray[:3]}"

        c.check("nothing but protocol lines on stdout", no_stray_output)

    finally:
        rc_srv = srv.quit()
        rc_cli = cli.quit()

    c.check("quit exits 0", lambda: (rc_srv, rc_cli) == (0, 0) or (_ for _ in ()).throw(
        AssertionError(f"exit codes {rc_srv}, {rc_cli}")))
    report = {"timings": timings, "observed": c.observed,
              "passed": c.passed, "failed": c.failed}
    if out_json:
        with open(out_json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"{c.passed} passed, {len(c.failed)} failed")
    return 0 if not c.failed else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="use this transport URL instead of a scratch vhost")
    ap.add_argument("--json", help="also write the report to this file")
    args = ap.parse_args()
    if args.url:
        return run(args.url, args.json)
    vhost = "amqp-rpc-selftest-" + secrets.token_hex(4)
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return run(f"rabbit://guest:guest@127.0.0.1:5672/{vhost}", args.json)
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    sys.exit(main())
