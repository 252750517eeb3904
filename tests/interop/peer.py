#!/usr/bin/env python3
"""A real oslo.messaging (18.3.1) RPC and notification peer for the interop tests, driven
over stdin/stdout.

    $AMQP_RPC_PYTHON tests/interop/peer.py --url rabbit://guest:guest@127.0.0.1:5672/VHOST \
        [--tracing [--service-name NAME]]

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

--tracing turns on oslo.messaging's OpenTelemetry tracing ([oslo_messaging_tracing]
tracing_enabled): before oslo traces anything the peer installs an SDK TracerProvider
(resource service.name = --service-name, default "python-peer") that keeps finished spans
in memory (SimpleSpanProcessor + InMemorySpanExporter; no OTLP exporter), which oslo then
reuses. call/cast get a PRODUCER span "<topic>.<method>" and put the W3C trace context
into the request context (_context_traceparent, ...); a served request runs inside a
CONSUMER span "<method> receive" whose parent is the one in the request context.

Commands (see tests/interop/README.md for the full description):
    call / cast   {"cmd":"call","topic":T,"method":M,"args":{},"ctxt":{}, optional
                   "server","fanout","namespace","version","timeout",
                   "call_monitor_timeout","exchange","retry","version_cap",
                   "at_least_once","parent_span"}        -> result (call) / null (cast)
                   ("parent_span": NAME, --tracing only: the send runs inside a new
                   INTERNAL span NAME, the parent of oslo's PRODUCER span)
    serve         {"cmd":"serve","topic":T,"server":S, optional "exchange","ping"}
                                                         -> "started" once consuming
    log           {"cmd":"log","server":S, optional "min":N,"timeout":SECS}
                                                         -> list of handled requests, cleared
                   (with "min": first waits up to "timeout" (default 10) s for N entries)
    stop          {"cmd":"stop","server":S}              -> "stopped" after stop()+wait()
    notify        {"cmd":"notify","priority":P,"event_type":E,"payload":<json>, optional
                   "driver" ("messagingv2"),"topics" (["notifications"]),"publisher_id",
                   "ctxt","ctxt_kind","exchange","retry","count"}
                                                         -> {"notified": N, "errors": [...]}
    listen        {"cmd":"listen","name":L,"targets":[{"topic":T, optional "exchange"}],
                   optional "priorities" (["info"]),"pool","allow_requeue",
                   "requeue_first","filter","batch_size","batch_timeout"}
                                                         -> "listening" once consuming
    received      {"cmd":"received","name":L, optional "min","timeout","clear"}
                                                         -> {"notifications": [...],
                                                             "batches": [...]}
    stop_listener {"cmd":"stop_listener","name":L}       -> "stopped" after stop()+wait()
    spans         {"cmd":"spans", optional "min":N,"timeout":SECS,"clear":BOOL}
                                                         -> finished spans (--tracing only)
                   [{"name","kind","trace_id","span_id","trace_flags","trace_state",
                     "parent_span_id","parent_is_remote","attributes","status",
                     "status_description","events","scope","service",
                     "start_time_unix_nano","end_time_unix_nano"}], in the order they
                   finished; "clear" (default true) forgets them; with "min", first waits
                   up to "timeout" (default 10) s for N spans
    info          {"cmd":"info"}                         -> versions and pid
    quit          {"cmd":"quit"}                         -> "bye", then exit 0
EOF on stdin stops everything and exits 0 as well.

call, cast, stop, notify, stop_listener and a log, received or spans with "min" run in
worker threads (several may be in flight; their responses may come out of order); serve,
listen, log, received, spans, info and quit are handled in order on the main thread.
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
# Notifications

# Endpoint method names of a notification listener, i.e. the lower-case priorities
# (oslo_messaging.notify.dispatcher.PRIORITIES).
LISTEN_PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")
# Notifier methods (oslo_messaging.notify.notifier.Notifier); "warning" is "warn"'s alias,
# both send priority WARN.
NOTIFY_PRIORITIES = LISTEN_PRIORITIES + ("warning",)
DRIVERS = ("messagingv2", "messaging")


class DictContext:
    """A context object that oslo's notifier sends as exactly the given keys.

    Notifier._notify() replaces a plain dict (or None) context by {} (no _context_* keys;
    notify/notifier.py _sanitize_context), and sends other contexts as
    ctxt.redacted_copy(), flattened by amqp.pack_context() through to_dict().
    """

    def __init__(self, values):
        self._values = dict(values)

    def redacted_copy(self):
        return self

    def to_dict(self):
        return dict(self._values)


def make_notify_context(cmd):
    """The context argument for Notifier.<priority>() (see "ctxt_kind")."""
    if "ctxt" not in cmd:
        return {}
    ctxt = cmd["ctxt"]
    kind = cmd.get("ctxt_kind", "object")
    if kind == "object":
        return DictContext(ctxt or {})
    if kind == "dict":  # oslo drops it: no _context_* keys on the wire
        return dict(ctxt or {})
    if kind == "request_context":
        from oslo_context import context as oslo_context
        return oslo_context.RequestContext.from_dict(ctxt or {})
    raise ValueError(f"unknown ctxt_kind {kind!r} (object, dict, request_context)")


class SendErrors(logging.Handler):
    """Collects, per thread, the errors oslo's notifier logs instead of raising them
    (notify/notifier.py do_notify, notify/messaging.py MessagingDriver.notify)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self._lock_ = threading.Lock()
        self._by_thread = {}

    def emit(self, record):
        text = record.getMessage().split("\n", 1)[0]
        with self._lock_:
            bucket = self._by_thread.get(record.thread)
            if bucket is not None:
                bucket.append(text)

    def begin(self):
        with self._lock_:
            self._by_thread[threading.get_ident()] = []

    def end(self):
        with self._lock_:
            return self._by_thread.pop(threading.get_ident(), [])


class NotificationRecorder:
    """What one listener received (kept after it stops).

    Every endpoint invocation is recorded, including those answered with REQUEUE (their
    "result" is "requeue"); a batch listener also records each batch as a unit.
    """

    def __init__(self, requeue_first=0):
        self._cond = threading.Condition()
        self._notifications = []
        self._batches = []
        self._requeue_left = int(requeue_first or 0)

    def _result(self):
        """"requeue" for the first `requeue_first` invocations, then "handled"."""
        if self._requeue_left > 0:
            self._requeue_left -= 1
            return "requeue"
        return "handled"

    @staticmethod
    def _entry(priority, ctxt, publisher_id, event_type, payload, metadata, result):
        return {"priority": priority, "ctxt": ctxt, "publisher_id": publisher_id,
                "event_type": event_type, "payload": payload, "metadata": metadata,
                "result": result}

    def one(self, priority, ctxt, publisher_id, event_type, payload, metadata):
        with self._cond:
            result = self._result()
            self._notifications.append(self._entry(priority, ctxt, publisher_id,
                                                   event_type, payload, metadata, result))
            self._cond.notify_all()
        return oslo_messaging.NotificationResult.REQUEUE if result == "requeue" else None

    def batch(self, priority, messages):
        with self._cond:
            result = self._result()
            entries = [self._entry(priority, m["ctxt"], m["publisher_id"], m["event_type"],
                                   m["payload"], m["metadata"], result) for m in messages]
            self._notifications.extend(entries)
            self._batches.append({"priority": priority, "result": result,
                                  "notifications": entries})
            self._cond.notify_all()
        return oslo_messaging.NotificationResult.REQUEUE if result == "requeue" else None

    def take(self, min_entries=0, timeout=0.0, clear=False):
        """The notifications and batches so far, first waiting up to `timeout` seconds for
        at least `min_entries` notifications; with `clear`, forgets them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._notifications) < min_entries:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            result = {"notifications": list(self._notifications),
                      "batches": list(self._batches)}
            if clear:
                self._notifications.clear()
                self._batches.clear()
            return result


def make_notification_endpoint(recorder, priorities, batch, filter_rule):
    """An endpoint with a method for each of `priorities` only (the listener subscribes to
    the priorities its endpoints have methods for) and `filter_rule` if given."""

    class Endpoint:
        pass

    endpoint = Endpoint()
    for priority in priorities:
        if batch:
            def method(messages, _p=priority):
                return recorder.batch(_p, messages)
        else:
            def method(ctxt, publisher_id, event_type, payload, metadata, _p=priority):
                return recorder.one(_p, ctxt, publisher_id, event_type, payload, metadata)
        setattr(endpoint, priority, method)
    if filter_rule is not None:
        endpoint.filter_rule = filter_rule
    return endpoint


# ---------------------------------------------------------------------------------------
# Tracing (--tracing)

class Tracing:
    """OpenTelemetry for oslo.messaging's [oslo_messaging_tracing]: an SDK TracerProvider
    whose finished spans stay in memory, installed as the global provider.

    oslo's _get_tracer() reuses an installed SDK provider and builds its own OTLP one only
    when none is (a ProxyTracerProvider), so this must be installed before oslo first
    traces; it is, in main(), before the Peer exists. opentelemetry is imported here
    only, so a peer without --tracing neither needs nor loads it.
    """

    def __init__(self, service_name):
        from opentelemetry import propagate, trace
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider, sampling
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter)
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator)

        cond = threading.Condition()

        class Exporter(InMemorySpanExporter):
            """Also wakes up the `spans` commands waiting for spans."""

            def export(self, spans):
                with cond:
                    result = super().export(spans)
                    cond.notify_all()
                return result

        self.service_name = service_name
        self._cond = cond
        self._exporter = Exporter()
        # The SDK's default sampler (parent-based, always on), given explicitly so that
        # OTEL_TRACES_SAMPLER cannot change it: a request whose traceparent says "not
        # sampled" (flags 00) gets no CONSUMER span, as in any OpenStack service.
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=sampling.ParentBased(sampling.ALWAYS_ON))
        self.provider.add_span_processor(SimpleSpanProcessor(self._exporter))
        # What oslo's inject()/extract() use: the default propagators (W3C trace context
        # and baggage), given explicitly so that OTEL_PROPAGATORS cannot change them.
        propagate.set_global_textmap(CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
        trace.set_tracer_provider(self.provider)
        if trace.get_tracer_provider() is not self.provider:
            raise RuntimeError("another OpenTelemetry TracerProvider is already installed")
        self.tracer = self.provider.get_tracer("amqp-rpc-interop.peer")

    def enable(self, conf):
        """Turn oslo's tracing on in `conf` (the peer's transport configuration)."""
        # make_conf() registered [oslo_messaging_tracing] on the private conf.
        conf.set_override("tracing_enabled", True, group="oslo_messaging_tracing")
        conf.set_override("tracing_service_name", self.service_name,
                          group="oslo_messaging_tracing")
        # Bind oslo's (process-wide, cached) tracer now rather than at the first request:
        # it must come from this provider, not from an OTLP one oslo would build.
        from opentelemetry.sdk.trace import Tracer
        from oslo_messaging._tracing import client as oslo_tracing
        tracer = oslo_tracing._get_tracer(conf)
        if not isinstance(tracer, Tracer):
            raise RuntimeError(f"oslo.messaging traces with {tracer!r}, not the peer's "
                               "in-memory TracerProvider")

    def span(self, name):
        """A context manager: a new INTERNAL span `name`, current in this thread."""
        return self.tracer.start_as_current_span(name)

    def take(self, min_spans=0, timeout=0.0, clear=True):
        """The finished spans (oldest first), first waiting up to `timeout` seconds for at
        least `min_spans` of them; with `clear`, forgets them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._exporter.get_finished_spans()) < min_spans:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            spans = self._exporter.get_finished_spans()
            if clear:
                self._exporter.clear()
        return [span_object(s) for s in spans]


def _attr_value(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def span_object(span):
    ctx, parent = span.context, span.parent
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "trace_flags": int(ctx.trace_flags),  # 1 sampled, | 2 random trace id (W3C level 2)
        "trace_state": ctx.trace_state.to_header() if ctx.trace_state else "",
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "parent_is_remote": parent.is_remote if parent is not None else None,
        "attributes": {k: _attr_value(v) for k, v in (span.attributes or {}).items()},
        "status": span.status.status_code.name,  # UNSET, OK, ERROR
        "status_description": span.status.description,
        "events": [{"name": e.name,
                    "attributes": {k: _attr_value(v)
                                   for k, v in (e.attributes or {}).items()}}
                   for e in span.events],
        "scope": scope.name if scope is not None else None,
        "service": span.resource.attributes.get("service.name"),
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
    }


# ---------------------------------------------------------------------------------------
# The peer

class Peer:
    def __init__(self, url, out, control_exchange=None, exmods=(),
                 default_exmods=True, tracing=None):
        self.out = out
        self.conf = make_conf(control_exchange, "amqp-rpc-interop")
        self.tracing = tracing  # a Tracing, or None
        if tracing is not None:
            tracing.enable(self.conf)
        self.url = url
        self.exmods = (EXMODS if default_exmods else []) + list(exmods)
        self.transport = oslo_messaging.get_rpc_transport(
            self.conf, url=url, allowed_remote_exmods=self.exmods)
        self.log = RequestLog()
        self.servers = {}
        self.servers_lock = threading.Lock()
        # Notifications: transports by exchange (None: the control exchange), notifiers,
        # listeners and what they received, by name.
        self.notify_lock = threading.Lock()
        self.notify_transports = {}
        self.notifiers = {}
        self.listeners = {}
        self.recorders = {}
        self.send_errors = SendErrors()
        logging.getLogger("oslo_messaging.notify").addHandler(self.send_errors)

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
                if "parent_span" in cmd:
                    self._tracing()  # fails at once without --tracing
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
            elif name == "notify":
                self.in_worker(cid, lambda: self.notify(cmd), timed=True)
            elif name == "listen":
                self.respond(cid, ok=self.listen(cmd))
            elif name == "received":
                recorder = self._recorder(cmd["name"])
                wanted, clear = int(cmd.get("min", 0)), bool(cmd.get("clear"))
                if wanted > 0:  # may wait: off the main thread
                    timeout = float(cmd.get("timeout", 10.0))
                    self.in_worker(cid, lambda: recorder.take(wanted, timeout, clear))
                else:
                    self.respond(cid, ok=recorder.take(clear=clear))
            elif name == "stop_listener":
                listener = self._take_listener(cmd["name"])
                self.in_worker(cid, lambda: self._stop(listener))
            elif name == "spans":
                tracing = self._tracing()
                wanted, clear = int(cmd.get("min", 0)), bool(cmd.get("clear", True))
                if wanted > 0:  # may wait: off the main thread
                    timeout = float(cmd.get("timeout", 10.0))
                    self.in_worker(cid, lambda: tracing.take(wanted, timeout, clear))
                else:
                    self.respond(cid, ok=tracing.take(clear=clear))
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

    def _tracing(self):
        if self.tracing is None:
            raise ValueError("tracing is off: start the peer with --tracing")
        return self.tracing

    def send(self, cmd, is_call):
        if "parent_span" in cmd:
            # oslo's PRODUCER span (trace_send) becomes a child of this INTERNAL span.
            with self._tracing().span(str(cmd["parent_span"])):
                return self._send(cmd, is_call)
        return self._send(cmd, is_call)

    def _send(self, cmd, is_call):
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

    def notification_transport(self, exchange=None):
        """The notification transport publishing to `exchange` (None: the control
        exchange). A Notifier has no exchange of its own: it publishes to its transport's
        default exchange, [DEFAULT] control_exchange of the transport's configuration."""
        with self.notify_lock:
            transport = self.notify_transports.get(exchange)
            if transport is None:
                conf = self.conf
                if exchange is not None:
                    conf = make_conf(None, "amqp-rpc-interop")
                    conf.register_opts(oslo_messaging.transport._transport_opts)
                    conf.set_override("control_exchange", exchange)
                transport = oslo_messaging.get_notification_transport(conf, url=self.url)
                self.notify_transports[exchange] = transport
            return transport

    def notifier(self, cmd):
        driver = cmd.get("driver", "messagingv2")
        if driver not in DRIVERS:
            raise ValueError(f"unknown driver {driver!r} (one of {', '.join(DRIVERS)})")
        topics = cmd.get("topics", ["notifications"])
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise ValueError("topics must be a list of strings")
        key = (cmd.get("exchange"), driver, tuple(topics), cmd.get("publisher_id"),
               cmd.get("retry"))
        transport = self.notification_transport(cmd.get("exchange"))
        with self.notify_lock:
            notifier = self.notifiers.get(key)
            if notifier is None:
                notifier = oslo_messaging.Notifier(
                    transport, publisher_id=cmd.get("publisher_id"), driver=driver,
                    topics=topics, retry=cmd.get("retry"))
                self.notifiers[key] = notifier
            return notifier

    def notify(self, cmd):
        priority = cmd["priority"]
        if priority not in NOTIFY_PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        event_type = cmd["event_type"]
        payload = json.loads(cmd["payload_json"]) if "payload_json" in cmd \
            else cmd.get("payload")
        count = int(cmd.get("count", 1))
        send = getattr(self.notifier(cmd), priority)
        ctxt = make_notify_context(cmd)
        self.send_errors.begin()
        try:
            for _ in range(count):
                send(ctxt, event_type, payload)
        finally:
            errors = self.send_errors.end()
        return {"notified": count, "errors": errors}

    def listen(self, cmd):
        name = cmd["name"]
        with self.servers_lock:
            if name in self.listeners:
                raise ValueError(f"listener {name!r} is already running")
        targets = [oslo_messaging.Target(topic=t["topic"], exchange=t.get("exchange"))
                   for t in cmd["targets"]]
        if not targets:
            raise ValueError("a listener needs at least one target")
        priorities = cmd.get("priorities", ["info"])
        unknown = [p for p in priorities if p not in LISTEN_PRIORITIES]
        if unknown or not priorities:
            raise ValueError(f"priorities must be some of {', '.join(LISTEN_PRIORITIES)}")
        batch = "batch_size" in cmd or "batch_timeout" in cmd
        filter_rule = None
        if cmd.get("filter"):
            filter_rule = oslo_messaging.NotificationFilter(**cmd["filter"])
        recorder = NotificationRecorder(cmd.get("requeue_first", 0))
        endpoint = make_notification_endpoint(recorder, priorities, batch, filter_rule)
        options = {"executor": "threading", "allow_requeue": bool(cmd.get("allow_requeue")),
                   "pool": cmd.get("pool")}
        transport = self.notification_transport()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # executor=, see serve()
            if batch:
                listener = oslo_messaging.get_batch_notification_listener(
                    transport, targets, [endpoint], batch_size=cmd.get("batch_size"),
                    batch_timeout=cmd.get("batch_timeout"), **options)
            else:
                listener = oslo_messaging.get_notification_listener(
                    transport, targets, [endpoint], **options)
        listener.start()
        with self.servers_lock:
            self.listeners[name] = listener
            self.recorders[name] = recorder
        wait_consuming(listener)
        return "listening"

    def _recorder(self, name):
        with self.servers_lock:
            recorder = self.recorders.get(name)
        if recorder is None:
            raise ValueError(f"no listener {name!r}")
        return recorder

    def _take_listener(self, name):
        with self.servers_lock:
            listener = self.listeners.pop(name, None)
        if listener is None:
            raise ValueError(f"no running listener {name!r}")
        return listener

    def info(self):
        import importlib.metadata as md
        versions = {}
        for dist in ("oslo.messaging", "kombu", "amqp", "oslo.config", "oslo.context",
                     "opentelemetry-api", "opentelemetry-sdk"):
            try:
                versions[dist] = md.version(dist)
            except md.PackageNotFoundError:
                versions[dist] = None
        return {"pid": os.getpid(), "python": sys.version.split()[0], "versions": versions,
                "allowed_remote_exmods": self.exmods,
                "control_exchange": self.conf.control_exchange,
                "tracing": self.tracing.service_name if self.tracing else None}

    def shutdown(self, grace=30.0):
        with self.servers_lock:
            servers = list(self.servers.values()) + list(self.listeners.values())
            self.servers.clear()
            self.listeners.clear()
        threads = [threading.Thread(target=self._stop, args=(s,), daemon=True)
                   for s in servers]
        for t in threads:
            t.start()
        deadline = time.monotonic() + grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for transport in [self.transport] + list(self.notify_transports.values()):
            try:
                transport.cleanup()
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
    parser.add_argument("--tracing", action="store_true",
                        help="enable oslo.messaging's OpenTelemetry tracing, spans kept in "
                             "memory (see the spans command)")
    parser.add_argument("--service-name", default="python-peer",
                        help="service.name of the spans' resource with --tracing "
                             "(default python-peer)")
    parser.add_argument("--log-level", default=os.environ.get("AMQP_RPC_PEER_LOG", "WARNING"),
                        help="stderr log level (default WARNING, env AMQP_RPC_PEER_LOG)")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="peer[%(process)d] %(levelname)s %(name)s: %(message)s")
    out = Output()
    # Installed before the Peer (and so the transport, servers and clients) exists.
    tracing = Tracing(args.service_name) if args.tracing else None
    url, url_control_exchange = split_control_exchange(args.url)
    peer = Peer(url, out, url_control_exchange or args.control_exchange, args.allow_exmod,
                not args.no_default_exmods, tracing)

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
