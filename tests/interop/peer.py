#!/usr/bin/env python3
"""A real oslo.messaging (18.3.1) RPC peer for the interop tests, driven over stdin/stdout.

    $AMQP_RPC_PYTHON tests/interop/peer.py --url rabbit://guest:guest@127.0.0.1:5672/VHOST

The URL's query carries oslo's [oslo_messaging_rabbit] options (e.g.
?amqp_durable_queues=true), as in oslo. It may also carry control_exchange, as amqp-rpc's
URLs do: the peer takes it out of the URL (oslo would refuse it there, being a [DEFAULT]
option) and uses it as the control exchange, overriding --control-exchange. So one URL
configures a Rust transport and a Python peer alike.

Protocol: one JSON object per line in each direction (UTF-8; responses are ASCII JSON).
Every command line gets exactly one response line carrying the command's "id" (null when
the command had none):

    {"id": ID, "ok": RESULT}                                 success
    {"id": ID, "error": {"class": ..., "module": ..., "message": ..., "args": [...], ...}}

"class"/"module" are type(e).__name__/__module__ exactly as Python sees them (e.g.
"NoSuchMethod_Remote" in "oslo_messaging.rpc.dispatcher_Remote", "ValueError" in
"builtins", "RemoteError" in "oslo_messaging.rpc.client", "MessagingTimeout" in
"oslo_messaging.exceptions"); "message" is str(e). Extra error fields: "exc_type",
"value", "traceback" for RemoteError; "kwargs" when the exception has a dict attribute
`kwargs` (e.g. interop_errors.CustomError -> {"code": ...}); "mro": "module.Class" of each
class in type(e).__mro__ (what an `except` clause catches it by). call/cast responses also
carry "elapsed" (seconds, float) next to "ok"/"error".

Commands (see tests/interop/README.md for the full description):
    call / cast   {"cmd":"call","topic":T,"method":M,"args":{},"ctxt":{}, optional
                   "server","fanout","namespace","version","timeout",
                   "call_monitor_timeout","exchange","retry","version_cap",
                   "at_least_once"}                      -> result (call) / null (cast)
    serve         {"cmd":"serve","topic":T,"server":S, optional "exchange","ping"}
                                                         -> "started" once consuming
    log           {"cmd":"log","server":S, optional "min":N,"timeout":SECS}
                                                         -> list of handled requests, cleared
                   (with "min": first waits up to "timeout" (default 10) s for N entries)
    stop          {"cmd":"stop","server":S}              -> "stopped" after stop()+wait()
    info          {"cmd":"info"}                         -> versions and pid
    quit          {"cmd":"quit"}                         -> "bye", then exit 0
EOF on stdin stops everything and exits 0 as well.

call, cast, stop and a log with "min" run in worker threads (several may be in flight;
their responses may come out of order); serve, log, info and quit are handled in order on
the main thread.
Nothing but protocol lines is written to stdout: the original stdout is kept for the
protocol and file descriptor 1 is pointed at stderr, where logging goes (WARNING).
"""

import argparse
import json
import logging
import os
import sys
import threading
import time
import traceback
import warnings

sys.dont_write_bytecode = True  # no __pycache__ in tests/interop for its modules

# tests/interop is sys.path[0]. oslo_common silences eventlet's warning before it imports
# oslo.messaging, so it comes first.
from oslo_common import (  # noqa: E402
    claim_stdout, make_conf, split_control_exchange, wait_consuming)
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402
from oslo_messaging.rpc import dispatcher as rpc_dispatcher  # noqa: E402

import interop_errors  # noqa: E402

EXMODS = ["oslo_messaging.rpc.dispatcher", "interop_errors"]

LOG = logging.getLogger("interop.peer")


# ---------------------------------------------------------------------------------------
# Output

class Output:
    """Protocol lines on the original stdout; fd 1 is redirected to stderr."""

    def __init__(self):
        self._out = claim_stdout()
        self._lock = threading.Lock()

    def send(self, obj):
        line = json.dumps(obj, default=_json_default)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _json_default(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def error_object(exc):
    err = {
        "class": type(exc).__name__,
        "module": type(exc).__module__,
        "message": str(exc),
        "args": list(getattr(exc, "args", ()) or ()),
    }
    if isinstance(exc, oslo_messaging.RemoteError):
        err["exc_type"] = exc.exc_type
        err["value"] = exc.value
        err["traceback"] = exc.traceback
    kwargs = getattr(exc, "kwargs", None)
    if isinstance(kwargs, dict):
        err["kwargs"] = kwargs
    # The classes an `except` clause catches it by.
    err["mro"] = [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__]
    return err


# ---------------------------------------------------------------------------------------
# Endpoints

class RequestLog:
    """Per-server list of handled requests (kept after the server stops)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._entries = {}

    def add(self, server, method, args, ctxt):
        entry = {"server": server, "method": method, "args": args, "ctxt": ctxt}
        with self._cond:
            self._entries.setdefault(server, []).append(entry)
            self._cond.notify_all()

    def take(self, server, min_entries=0, timeout=0.0):
        """Remove and return the server's entries, first waiting up to `timeout` seconds
        for at least `min_entries` of them (returns what there is when time is up)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._entries.get(server, ())) < min_entries:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._entries.pop(server, [])


# Endpoint attributes that do not start with "_" are callable over RPC (oslo's
# DefaultRPCAccessPolicy), so the endpoints keep their state in "_" attributes.

class Default:
    """No target: namespace None, version 1.0."""

    def __init__(self, server, log):
        self._server = server
        self._log = log

    def _record(self, method, ctxt, args):
        self._log.add(self._server, method, args, ctxt)

    def echo(self, ctxt, **kw):
        self._record("echo", ctxt, kw)
        return kw

    def whoami(self, ctxt):
        self._record("whoami", ctxt, {})
        return self._server

    def context(self, ctxt):
        self._record("context", ctxt, {})
        return ctxt

    def sleep(self, ctxt, seconds):
        self._record("sleep", ctxt, {"seconds": seconds})
        time.sleep(seconds)
        return seconds

    def raise_value_error(self, ctxt, message):
        self._record("raise_value_error", ctxt, {"message": message})
        raise ValueError(message)

    def raise_custom(self, ctxt, message, code):
        self._record("raise_custom", ctxt, {"message": message, "code": code})
        raise interop_errors.CustomError(message, code=code)

    def raise_instance_not_found(self, ctxt, instance_id):
        self._record("raise_instance_not_found", ctxt, {"instance_id": instance_id})
        raise interop_errors.InstanceNotFound(instance_id=instance_id)

    def record(self, ctxt, **kw):
        self._record("record", ctxt, kw)
        return None

    def python_values(self, ctxt):
        """Values Python's json writes that strict JSON has not."""
        return {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
                "big": 2 ** 64, "neg_big": -(2 ** 70), "surrogate": "a\udc80b"}

    def describe(self, ctxt, **kw):
        """repr() of each argument and context value, as the Python side received them."""
        return {"args": {k: repr(v) for k, v in kw.items()},
                "ctxt": {k: repr(v) for k, v in ctxt.items()}}


class Calc:
    target = oslo_messaging.Target(namespace="calc", version="1.3")

    def __init__(self, server, log):
        self._server = server
        self._log = log

    def add(self, ctxt, x, y):
        self._log.add(self._server, "add", {"x": x, "y": y}, ctxt)
        return x + y

    def pow(self, ctxt, base, exp):
        self._log.add(self._server, "pow", {"base": base, "exp": exp}, ctxt)
        return base ** exp


# ---------------------------------------------------------------------------------------
# The peer

class Peer:
    def __init__(self, url, out, control_exchange=None, exmods=(),
                 default_exmods=True):
        self.out = out
        self.conf = make_conf(control_exchange, "amqp-rpc-interop")
        self.exmods = (EXMODS if default_exmods else []) + list(exmods)
        self.transport = oslo_messaging.get_rpc_transport(
            self.conf, url=url, allowed_remote_exmods=self.exmods)
        self.log = RequestLog()
        self.servers = {}
        self.servers_lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------

    def respond(self, cid, ok=None, error=None, **extra):
        msg = {"id": cid}
        if error is not None:
            msg["error"] = error_object(error)
        else:
            msg["ok"] = ok
        msg.update(extra)
        try:
            self.out.send(msg)
        except (TypeError, ValueError) as e:  # result not JSON-encodable
            self.out.send(dict({"id": cid, "error": error_object(e)}, **extra))

    def in_worker(self, cid, fn, timed=False):
        def run():
            start = time.monotonic()
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - every failure is reported
                outcome = {"error": e}
            else:
                outcome = {"ok": result}
            if timed:
                outcome["elapsed"] = time.monotonic() - start
            self.respond(cid, **outcome)

        threading.Thread(target=run, name=f"cmd-{cid}", daemon=True).start()

    def handle(self, line):
        cid = None
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("a command must be a JSON object")
            cid = cmd.get("id")
            name = cmd.get("cmd")
            if name in ("call", "cast"):
                self.in_worker(cid, lambda: self.send(cmd, name == "call"), timed=True)
            elif name == "stop":
                server = self._take_server(cmd["server"])
                self.in_worker(cid, lambda: self._stop(server))
            elif name == "serve":
                self.respond(cid, ok=self.serve(cmd))
            elif name == "log":
                server, wanted = cmd["server"], int(cmd.get("min", 0))
                if wanted > 0:  # may wait: off the main thread
                    timeout = float(cmd.get("timeout", 10.0))
                    self.in_worker(cid, lambda: self.log.take(server, wanted, timeout))
                else:
                    self.respond(cid, ok=self.log.take(server))
            elif name == "info":
                self.respond(cid, ok=self.info())
            elif name == "quit":
                self.shutdown()
                self.respond(cid, ok="bye")
                return False
            else:
                raise ValueError(f"unknown command {name!r}")
        except Exception as e:  # noqa: BLE001
            self.respond(cid, error=e)
        return True

    # -- commands ------------------------------------------------------------------------

    def send(self, cmd, is_call):
        target = oslo_messaging.Target(topic=cmd["topic"], exchange=cmd.get("exchange"))
        options = {k: cmd[k] for k in ("server", "fanout", "namespace", "version",
                                       "timeout", "call_monitor_timeout", "retry",
                                       "version_cap") if k in cmd}
        if "at_least_once" in cmd:
            options["transport_options"] = oslo_messaging.TransportOptions(
                at_least_once=bool(cmd["at_least_once"]))
        client = oslo_messaging.get_rpc_client(self.transport, target)
        if options:
            client = client.prepare(**options)
        # "args_json"/"ctxt_json": JSON text read by Python's json (NaN, lone surrogates and
        # big integers included), for values the Rust side's protocol lines cannot hold.
        ctxt = json.loads(cmd["ctxt_json"]) if "ctxt_json" in cmd else cmd.get("ctxt") or {}
        args = json.loads(cmd["args_json"]) if "args_json" in cmd else cmd.get("args") or {}
        if is_call:
            result = client.call(ctxt, cmd["method"], **args)
            # "result_json": the result as Python's json.dumps writes it (a string).
            return json.dumps(result) if cmd.get("result_json") else result
        client.cast(ctxt, cmd["method"], **args)
        return None

    def serve(self, cmd):
        name = cmd["server"]
        with self.servers_lock:
            if name in self.servers:
                raise ValueError(f"server {name!r} is already running")
        target = oslo_messaging.Target(topic=cmd["topic"], server=name,
                                       exchange=cmd.get("exchange"))
        endpoints = [Default(name, self.log), Calc(name, self.log)]
        ping = bool(cmd.get("ping"))
        # rpc_ping_enabled is read from the global cfg.CONF when the dispatcher is built.
        cfg.CONF.register_opts(rpc_dispatcher._dispatcher_opts)
        cfg.CONF.set_override("rpc_ping_enabled", ping)
        try:
            with warnings.catch_warnings():
                # executor= is deprecated in 18.x ("threading" will be the only one);
                # it is given explicitly so that an eventlet-patched process cannot
                # silently switch the peer to the eventlet executor.
                warnings.simplefilter("ignore", DeprecationWarning)
                server = oslo_messaging.get_rpc_server(self.transport, target, endpoints,
                                                       executor="threading")
        finally:
            cfg.CONF.clear_override("rpc_ping_enabled")
        server.start()
        with self.servers_lock:
            self.servers[name] = server
        wait_consuming(server)
        return "started"

    def _take_server(self, name):
        with self.servers_lock:
            server = self.servers.pop(name, None)
        if server is None:
            raise ValueError(f"no running server {name!r}")
        return server

    @staticmethod
    def _stop(server):
        server.stop()
        server.wait()
        return "stopped"

    def info(self):
        import importlib.metadata as md
        versions = {}
        for dist in ("oslo.messaging", "kombu", "amqp", "oslo.config"):
            try:
                versions[dist] = md.version(dist)
            except md.PackageNotFoundError:
                versions[dist] = None
        return {"pid": os.getpid(), "python": sys.version.split()[0], "versions": versions,
                "allowed_remote_exmods": self.exmods}

    def shutdown(self, grace=30.0):
        with self.servers_lock:
            servers = list(self.servers.values())
            self.servers.clear()
        threads = [threading.Thread(target=self._stop, args=(s,), daemon=True)
                   for s in servers]
        for t in threads:
            t.start()
        deadline = time.monotonic() + grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        try:
            self.transport.cleanup()
        except Exception:  # noqa: BLE001
            LOG.warning("transport cleanup failed", exc_info=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="transport URL (rabbit://...)")
    parser.add_argument("--control-exchange", default=None,
                        help="control exchange (default: oslo's 'openstack'); a "
                             "control_exchange parameter in the URL's query overrides it")
    parser.add_argument("--allow-exmod", action="append", default=[],
                        help="extra module for allowed_remote_exmods (repeatable)")
    parser.add_argument("--no-default-exmods", action="store_true",
                        help="do not allow %s (to observe RemoteError)" % ", ".join(EXMODS))
    parser.add_argument("--log-level", default=os.environ.get("AMQP_RPC_PEER_LOG", "WARNING"),
                        help="stderr log level (default WARNING, env AMQP_RPC_PEER_LOG)")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="peer[%(process)d] %(levelname)s %(name)s: %(message)s")
    out = Output()
    url, url_control_exchange = split_control_exchange(args.url)
    peer = Peer(url, out, url_control_exchange or args.control_exchange, args.allow_exmod,
                not args.no_default_exmods)

    stdin = open(sys.stdin.fileno(), "r", encoding="utf-8", errors="replace",
                 closefd=False)
    keep_going = True
    for line in stdin:
        if not line.strip():
            continue
        keep_going = peer.handle(line)
        if not keep_going:
            break
    if keep_going:  # EOF
        peer.shutdown()
    sys.stderr.flush()
    # Non-daemon threads of the driver (connection pool, heartbeats) must not keep a
    # finished peer alive.
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(2)
