#!/usr/bin/env python3
"""Python (oslo.messaging 18.3.1) side of the amqp-rpc benchmark: one script, two modes.

Run it with the project's venv (scripts/setup.sh creates it): .venv/bin/python
bench/oslo_bench.py MODE ...  The URL is an oslo transport URL
(rabbit://guest:guest@127.0.0.1:5672/VHOST); its query may carry [oslo_messaging_rabbit]
options, and also control_exchange as amqp-rpc's URLs do (taken out of the URL and used
as oslo's control exchange, as tests/interop/peer.py does; the two share
tests/interop/oslo_common.py). Logging goes to stderr at
WARNING; stdout carries nothing but the lines described below (file descriptor 1 is
pointed at stderr, so stray prints of libraries cannot corrupt it).

SERVER MODE
    oslo_bench.py server --url URL --topic T --server S [--pool 64]

    An oslo RPC server (threading executor, executor_thread_pool_size = --pool) on
    Target(topic=T, server=S), with one endpoint (no target, so namespace None and
    version 1.0):
        echo(ctxt, payload)  -> payload
        sink(ctxt, payload)  -> None; increments a thread-safe counter (for casts)
        count(ctxt)          -> the counter
        reset(ctxt)          -> None; zeroes the counter
    Prints exactly one line "READY" on stdout once its consumers are registered, then
    runs until stdin reaches EOF or it gets SIGTERM (or SIGINT); then stop() + wait(),
    and exits 0 (1 if stopping takes more than 15 s, 2 on a startup failure). Stopping
    takes up to ~5 s: oslo's listener polls with a timeout that grows to 5 s when idle.

CLIENT MODE
    oslo_bench.py client --url URL --topic T
                         --workload {calls,casts,fanout,recovery,
                                     notify-publish,notify-consume,notify-deliver}
                         [--seconds S=10] [--concurrency C=1] [--payload-bytes B=100]
                         [--count N=1000] [--servers K] [--call-timeout T=30]
                         [--client-mode {shared,per-thread,per-transport}]
                         [--driver {messagingv2,messaging}]

    Runs one workload and prints one JSON object (one line) on stdout. P is a str of B
    ASCII bytes ("x" * B). Before measuring (RPC workloads; notify-* below), a warm-up (not counted; at most 5 s): 3
    sequential echo calls, then 2 echo calls from each of the C threads (this also opens
    the pooled connections the measured threads will use). Calls time out after 10 s
    (recovery: after T s, --call-timeout).

    calls   C threads each loop client.call({}, "echo", payload=P) until S seconds have
            passed since the threads were released (calls in flight then are finished).
            {"ops": successful calls, "seconds": from release to the last thread's end,
             "ops_per_s": ops / seconds, "p50_ms": .., "p99_ms": .., "errors": failed or
             wrong replies}
            Percentiles (nearest rank) are over the latencies of every successful call of
            every thread.
    casts   call reset; then C threads publish N casts client.cast({}, "sink", payload=P)
            (N split evenly) as fast as they can; then call count every 10 ms until it
            reaches N or S seconds have passed since the first publish.
            {"ops": casts delivered (the last count seen), "seconds": first publish to
             the poll that saw the last delivery, "ops_per_s": .., "publish_seconds":
             first publish to the last publish's return, "expected": N, "errors": ..}
            Without --servers, reset and count are sent to the topic (one server); with
            --servers K they go to each of s0..s{K-1} (prepare(server=...)) and the counts
            are summed.
    fanout  K servers (--servers, default 1) named s0..s{K-1} run on the topic. Reset
            each (prepare(server=...)), publish N prepare(fanout=True).cast({}, "sink",
            payload=P) from C threads, then poll each server's count every 10 ms until
            all reach N (or S seconds have passed since the first publish).
            {"ops": deliveries summed over the servers (N*K when complete), "seconds",
             "ops_per_s", "publish_seconds", "expected": N*K, "errors"}
    recovery
            Sequential echo calls from one thread (C is ignored) for S seconds, and on
            while the last one failed (starting calls until S + T at most), through
            whatever happens to the connections meanwhile: the benchmark closes them all
            from outside (rabbitmqctl close_all_connections) and measures how the calls
            come through. oslo's reconnection options keep their defaults
            (kombu_reconnect_delay 1 s, rabbit_retry_interval 1 s, ...). Once warmed up,
            prints the line "START" on stdout just as the first measured call starts, then
            at the end the JSON object:
            {"ops": successful calls, "seconds": from START to the last call's end,
             "calls": [[start, end, ok], ...] (every call in order; seconds since START,
             6 decimals; ok is false for a failed call or a wrong reply), "errors": ..}

    notify-publish, notify-consume, notify-deliver
            Notifications, not RPC: no server is needed and there is no echo warm-up.
            One notification transport (get_notification_transport) and one
            Notifier(transport, publisher_id="bench", driver=--driver (default
            messagingv2), topics=[T]) shared by the C threads; each notification is
            notifier.info({}, "bench.notify", P): priority INFO, routing key and queue
            T.info on the control exchange (default "openstack"; control_exchange in the
            URL changes it), no context keys (oslo drops a plain dict context). oslo
            publishes with publisher confirms (kombu confirm_publish=True): info() returns
            once the broker confirmed. A send failure is not raised but logged by oslo;
            such log records count as errors. The listener, where there is one, is
            get_notification_listener(transport, [Target(topic=T)], [endpoint],
            executor="threading") with oslo's defaults: 64 worker threads, no prefetch
            limit (rabbit_qos_prefetch_count 0), ack after the endpoint returns; its
            endpoint's info() counts. Warm-up (not counted): each thread publishes 2
            notifications (notify-deliver: the listener runs first and must get them all),
            then the queue T.info is purged (with py-amqp, outside oslo), so every run
            starts from an empty queue; runs leave it empty.
            C threads publish N (split evenly) as fast as they can, as casts do
            (publishing stops at first publish + S; what is left unpublished counts as
            errors).
    notify-publish
            Publishing only, nobody consumes. Afterwards the queue's depth is read (passive
            queue.declare) and the queue purged.
            {"ops": notifications published without error, "seconds": first publish to
             the last publish's return, "ops_per_s": ops / seconds, "expected": N,
             "queued": messages in T.info after publishing (N when all arrived),
             "errors": ..}
    notify-consume
            Draining a pre-filled queue: first the N notifications are published (not
            timed; the fill must succeed, all N in T.info, within S seconds), then the
            listener is started and the clock runs from just before listener.start() (the
            consumer's set-up is included: its queue declaration, binding and
            basic.consume) to the moment the endpoint was called with the Nth
            notification (its ack follows once it returns). Waits at most S seconds from
            that start, but the watchdog still fires S + 9 s after the process started:
            choose N so that the fill takes well under S (Python fills ~1,100/s with C=1,
            ~2,500/s with C=8 on 2 cores).
            {"ops": notifications handled (at most N), "seconds": start() to the Nth
             handled, "ops_per_s": ops / seconds, "expected": N, "start_seconds": until
             the listener consumed (start() plus basic.consume registered),
             "first_seconds": until the first was handled, "fill_seconds": the untimed
             fill, "errors": ..}
    notify-deliver
            Publishing and consuming at once (the notification counterpart of casts): the
            listener (same process) consumes while the C threads publish N; waits for the
            Nth delivery until first publish + S.
            {"ops": notifications handled (at most N), "seconds": first publish to the
             Nth handled (to the last handled if fewer arrived), "ops_per_s": ..,
             "publish_seconds": first publish to the last publish's return, "expected": N,
             "errors": ..}

    --client-mode (only to compare ways of driving oslo; default shared): shared = one
    transport and one RPCClient for all threads, as a service would do; per-thread = one
    transport, one RPCClient per thread; per-transport = one transport (its own connection
    pool and reply queue) and client per thread. RPCClient.call() is prepare().call() with
    no per-client state, so shared and per-thread run the same code: measured within noise
    of each other (C=64, B=100: 520-790 calls/s each on 2 shared cores).
    per-transport is clearly slower (~430 calls/s) and takes ~3 s to start 64 transports.

    Errors and deadlines: exit 0 with the JSON above whenever the workload ran (failed
    calls or casts are counted in "errors"; a casts/fanout run that times out delivers
    fewer than "expected"). Every run ends within S + 10 s of its start even if the
    broker misbehaves: a watchdog prints the partial result with an "error" key and
    exits 1 at S + 9 s; a run that cannot even warm up (broker unreachable...) also
    prints a JSON object with "error" and exits 1. A recovery run's watchdog fires at
    S + 2T + 8 s instead, so that a call started before S + T still has its whole
    timeout after the start-up and the warm-up.
"""

import time

_T0 = time.monotonic()  # the run's start, for the S + 10 s bound (before the imports)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402

# What this peer shares with the interop tests' peer lives beside that one. Importing it
# silences eventlet's deprecation warning before it imports oslo.messaging.
sys.dont_write_bytecode = True  # no __pycache__ in tests/interop
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "interop"))
from oslo_common import (  # noqa: E402
    claim_stdout, make_conf, split_control_exchange, wait_consuming)
import oslo_messaging  # noqa: E402

LOG = logging.getLogger("oslo_bench")

CALL_TIMEOUT = 10.0  # seconds, for every call
HARD_MARGIN = 9.0  # the watchdog fires at _T0 + S + HARD_MARGIN
# ... or, for recovery, at _T0 + S + 2T + RECOVERY_MARGIN: imports (~2 s), the warm-up (at
# most WARMUP_SECONDS) and the 1 s by which calls end before the watchdog fires.
RECOVERY_MARGIN = 8.0
POLL_INTERVAL = 0.010  # seconds between count polls
WARMUP_SECONDS = 5.0  # the warm-up's budget


# ---------------------------------------------------------------------------------------
# Common: stdout, configuration, transport

class Output:
    """Result lines on the original stdout; fd 1 is redirected to stderr. At most one
    JSON result is written (the watchdog and the main thread race for it)."""

    def __init__(self):
        self._out = claim_stdout()
        self._lock = threading.Lock()
        self._result_sent = False

    def line(self, text):
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def result(self, obj):
        """Write `obj` as the run's result; False if a result was already written."""
        with self._lock:
            if self._result_sent:
                return False
            self._result_sent = True
            self._out.write(json.dumps(obj) + "\n")
            self._out.flush()
            return True


def make_transport(url):
    url, control_exchange = split_control_exchange(url)
    conf = make_conf(control_exchange, "amqp-rpc-bench")
    return oslo_messaging.get_rpc_transport(conf, url=url)


def cleanup_transports(transports, timeout=2.0):
    """transport.cleanup() for each, in a daemon thread given `timeout` seconds (it closes
    connections, which can block if the broker misbehaves)."""
    def run():
        for transport in transports:
            try:
                transport.cleanup()
            except Exception:  # noqa: BLE001
                LOG.warning("transport cleanup failed", exc_info=True)

    thread = threading.Thread(target=run, name="cleanup", daemon=True)
    thread.start()
    thread.join(timeout)


# ---------------------------------------------------------------------------------------
# Server mode

class BenchEndpoint:
    """Attributes not starting with "_" are callable over RPC."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0

    def echo(self, ctxt, payload):
        return payload

    def sink(self, ctxt, payload):
        with self._lock:
            self._count += 1

    def count(self, ctxt):
        with self._lock:
            return self._count

    def reset(self, ctxt):
        with self._lock:
            self._count = 0


def run_server(args, out):
    stop_event = threading.Event()
    ready = threading.Event()

    def request_stop():
        if not ready.is_set():  # still connecting (kombu may retry forever): just go
            LOG.warning("stop requested before READY: exiting")
            sys.stderr.flush()
            os._exit(1)
        stop_event.set()

    def on_signal(signum, frame):
        request_stop()

    def watch_stdin():
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    transport = make_transport(args.url)
    target = oslo_messaging.Target(topic=args.topic, server=args.server)
    with warnings.catch_warnings():
        # executor= is deprecated in 18.x; given explicitly so that an eventlet-patched
        # process cannot silently switch to the eventlet executor.
        warnings.simplefilter("ignore", DeprecationWarning)
        server = oslo_messaging.get_rpc_server(transport, target, [BenchEndpoint()],
                                               executor="threading")
    # get_rpc_server registered [DEFAULT] executor_thread_pool_size on the conf;
    # start() reads it.
    transport.conf.set_override("executor_thread_pool_size", args.pool)
    server.start()
    wait_consuming(server)
    ready.set()
    out.line("READY")
    while not stop_event.wait(1.0):
        pass

    def stop():
        server.stop()
        server.wait()

    stopper = threading.Thread(target=stop, name="stop", daemon=True)
    stopper.start()
    stopper.join(15.0)
    if stopper.is_alive():
        LOG.warning("server %s did not stop within 15 s", args.server)
        return 1
    cleanup_transports([transport])
    return 0


# ---------------------------------------------------------------------------------------
# Client mode

def percentile(sorted_values, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


def _r(value, digits):
    return None if value is None else round(value, digits)


class Bench:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        if args.workload == "recovery":
            self.timeout = args.call_timeout
            self.hard_deadline = (_T0 + args.seconds + 2 * args.call_timeout
                                  + RECOVERY_MARGIN)
        else:
            self.timeout = CALL_TIMEOUT
            self.hard_deadline = _T0 + args.seconds + HARD_MARGIN
        self.payload = "x" * args.payload_bytes
        self.target = oslo_messaging.Target(topic=args.topic)
        self.transports = []
        self.errors = 0
        self.errors_lock = threading.Lock()
        self.partial = {}  # what the watchdog prints if it has to
        self.partial_fn = None  # or a function returning it
        self.main_transport = self._new_transport()
        self.main_client = self._new_client(self.main_transport)
        self.thread_clients = self._thread_clients()

    # -- plumbing ------------------------------------------------------------------------

    def _new_transport(self):
        transport = make_transport(self.args.url)
        self.transports.append(transport)
        return transport

    def _new_client(self, transport):
        return oslo_messaging.get_rpc_client(transport, self.target, timeout=self.timeout)

    def _thread_clients(self):
        mode, n = self.args.client_mode, self.args.concurrency
        if mode == "shared":
            return [self.main_client] * n
        if mode == "per-thread":
            return [self._new_client(self.main_transport) for _ in range(n)]
        return [self._new_client(self._new_transport()) for _ in range(n)]

    def add_errors(self, n=1):
        with self.errors_lock:
            self.errors += n

    def call_timeout(self, deadline=None):
        """The run's call timeout, cut short so that a call ends 1 s before the watchdog
        fires (and by `deadline`, monotonic, if given)."""
        end = self.hard_deadline - 1.0
        if deadline is not None:
            end = min(end, deadline)
        return max(0.1, min(self.timeout, end - time.monotonic()))

    def call(self, client, method, deadline=None, **kwargs):
        timeout = self.call_timeout(deadline)
        if timeout < self.timeout:  # (clients are made with timeout=self.timeout)
            client = client.prepare(timeout=timeout)
        return client.call({}, method, **kwargs)

    def start_watchdog(self):
        def fire():
            try:
                partial = self.partial_fn() if self.partial_fn else self.partial
            except Exception:  # noqa: BLE001
                partial = self.partial
            result = dict(partial, errors=self.errors,
                          error="deadline exceeded (S + %g s): the broker or the "
                                "servers did not answer in time" % HARD_MARGIN)
            if self.out.result(result):
                sys.stderr.flush()
                os._exit(1)

        timer = threading.Timer(max(0.0, self.hard_deadline - time.monotonic()), fire)
        timer.daemon = True
        timer.start()

    def run_threads(self, fn, deadline, name):
        """Run fn(i) in C daemon threads; join them until `deadline` (monotonic). Returns
        the number of threads still running then."""
        threads = [threading.Thread(target=fn, args=(i,), name=f"{name}-{i}", daemon=True)
                   for i in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in threads)

    # -- phases --------------------------------------------------------------------------

    def warm_up(self):
        """3 sequential echo calls, then 2 per thread (fills the connection pool). Raises
        if any of them fails or the warm-up exceeds WARMUP_SECONDS."""
        deadline = time.monotonic() + WARMUP_SECONDS
        for _ in range(3):
            self.call(self.main_client, "echo", deadline, payload=self.payload)
        failures = []

        def one(i):
            try:
                for _ in range(2):
                    self.call(self.thread_clients[i], "echo", deadline,
                              payload=self.payload)
            except Exception as e:  # noqa: BLE001
                failures.append(e)

        stuck = self.run_threads(one, deadline, "warmup")
        if failures:
            raise failures[0]
        if stuck:
            raise RuntimeError(f"warm-up took over {WARMUP_SECONDS:g} s")

    def publish(self, cast_fn, n):
        """Publish n casts with cast_fn(client) from C threads (n split evenly). Returns
        (t_first_publish, publish_seconds). Stops publishing at first publish + S."""
        c = self.args.concurrency
        shares = [n // c + (1 if i < n % c else 0) for i in range(c)]
        barrier = threading.Barrier(c + 1)

        def one(i):
            client = self.thread_clients[i]
            try:
                barrier.wait(WARMUP_SECONDS)
            except threading.BrokenBarrierError:
                return
            end = t_start[0] + self.args.seconds
            failed = 0
            for k in range(shares[i]):
                if time.monotonic() >= end:
                    failed += shares[i] - k
                    break
                try:
                    cast_fn(client)
                except Exception:  # noqa: BLE001
                    LOG.warning("cast failed", exc_info=True)
                    failed += 1
            if failed:
                self.add_errors(failed)

        t_start = [0.0]
        threads = [threading.Thread(target=one, args=(i,), name=f"cast-{i}", daemon=True)
                   for i in range(c)]
        for t in threads:
            t.start()
        t_start[0] = time.monotonic()
        barrier.wait()
        end = t_start[0] + self.args.seconds
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        if stuck:
            LOG.warning("%d publishing threads still running after S seconds", stuck)
        return t_start[0], time.monotonic() - t_start[0]

    def poll_counts(self, clients, done, t_first):
        """Call count on each client every POLL_INTERVAL until done(counts) or S seconds
        have passed since t_first. Returns (delivered, seconds): the sum of the last
        counts seen, and t_first to the poll that saw the last increase."""
        end = t_first + self.args.seconds
        last = [0] * len(clients)
        t_last_increase = t_first
        while True:
            for i, client in enumerate(clients):
                try:
                    value = self.call(client, "count")
                except Exception:  # noqa: BLE001
                    LOG.warning("count failed", exc_info=True)
                    self.add_errors()
                    continue
                if value > last[i]:
                    last[i] = value
                    t_last_increase = time.monotonic()
            delivered = sum(last)
            self.partial.update(ops=delivered, seconds=_r(t_last_increase - t_first, 6))
            if done(last) or time.monotonic() >= end:
                return delivered, t_last_increase - t_first
            time.sleep(POLL_INTERVAL)

    # -- workloads -----------------------------------------------------------------------

    def calls(self):
        c, seconds = self.args.concurrency, self.args.seconds
        latencies = [[] for _ in range(c)]
        ends = [None] * c
        barrier = threading.Barrier(c + 1)
        t_start = [0.0]

        def one(i):
            client, lat, payload = self.thread_clients[i], latencies[i], self.payload
            try:
                barrier.wait(WARMUP_SECONDS)
            except threading.BrokenBarrierError:
                return
            end = t_start[0] + seconds
            while True:
                t0 = time.monotonic()
                if t0 >= end:
                    break
                try:
                    result = self.call(client, "echo", payload=payload)
                except Exception:  # noqa: BLE001
                    LOG.warning("call failed", exc_info=True)
                    self.add_errors()
                    continue
                if result == payload:
                    lat.append(time.monotonic() - t0)
                else:
                    LOG.warning("wrong reply to echo")
                    self.add_errors()
            ends[i] = time.monotonic()

        def summary(end):
            elapsed = end - t_start[0]
            all_lat = sorted(x for lat in latencies for x in list(lat))
            ops = len(all_lat)
            return {
                "ops": ops,
                "seconds": _r(elapsed, 6),
                "ops_per_s": _r(ops / elapsed if elapsed > 0 else 0.0, 2),
                "p50_ms": _r(None if not ops else percentile(all_lat, 50) * 1000, 3),
                "p99_ms": _r(None if not ops else percentile(all_lat, 99) * 1000, 3),
                "errors": self.errors,
            }

        threads = [threading.Thread(target=one, args=(i,), name=f"call-{i}", daemon=True)
                   for i in range(c)]
        for t in threads:
            t.start()
        t_start[0] = time.monotonic()
        self.partial_fn = lambda: summary(time.monotonic())
        barrier.wait()
        for t in threads:  # calls in flight at S end within their 10 s timeout
            t.join(max(0.0, self.hard_deadline - 0.5 - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        if stuck:
            self.add_errors(stuck)
        finished = [e for e in ends if e is not None]
        end = max(finished) if finished and not stuck else time.monotonic()
        return summary(end)

    def recovery(self):
        client, payload = self.main_client, self.payload
        calls = []
        t_start = time.monotonic()
        end = t_start + self.args.seconds

        def summary():
            done = list(calls)
            ok = sum(1 for c in done if c[2])
            return {"ops": ok, "seconds": done[-1][1] if done else 0.0, "calls": done,
                    "errors": self.errors}

        self.partial_fn = summary
        self.out.line("START")
        while True:
            t0 = time.monotonic()
            last_failed = bool(calls) and not calls[-1][2]
            if t0 >= end and not (last_failed and t0 < end + self.timeout):
                break
            try:
                ok = self.call(client, "echo", payload=payload) == payload
                if not ok:
                    LOG.warning("wrong reply to echo")
            except Exception:  # noqa: BLE001
                LOG.warning("call failed", exc_info=True)
                ok = False
            if not ok:
                self.add_errors()
            calls.append([_r(t0 - t_start, 6), _r(time.monotonic() - t_start, 6), ok])
        return summary()

    def counter_clients(self):
        """Clients for reset/count: the topic's, or each of s0..s{K-1}."""
        if self.args.servers is None:
            return [self.main_client]
        return [self.main_client.prepare(server=f"s{i}") for i in range(self.args.servers)]

    def casts(self):
        n = self.args.count
        counters = self.counter_clients()
        for client in counters:
            self.call(client, "reset")
        payload = self.payload
        self.partial.update(ops=0, expected=n)
        t_first, publish_seconds = self.publish(
            lambda client: client.cast({}, "sink", payload=payload), n)
        self.partial["publish_seconds"] = _r(publish_seconds, 6)
        delivered, seconds = self.poll_counts(counters, lambda c: sum(c) >= n, t_first)
        return self.delivery_result(delivered, seconds, publish_seconds, n)

    def fanout(self):
        n, k = self.args.count, self.args.servers or 1
        counters = [self.main_client.prepare(server=f"s{i}") for i in range(k)]
        for client in counters:
            self.call(client, "reset")
        payload = self.payload
        self.partial.update(ops=0, expected=n * k)
        t_first, publish_seconds = self.publish(
            lambda client: client.prepare(fanout=True).cast({}, "sink", payload=payload),
            n)
        self.partial["publish_seconds"] = _r(publish_seconds, 6)
        delivered, seconds = self.poll_counts(
            counters, lambda c: all(v >= n for v in c), t_first)
        return self.delivery_result(delivered, seconds, publish_seconds, n * k)

    def delivery_result(self, delivered, seconds, publish_seconds, expected):
        return {
            "ops": delivered,
            "seconds": _r(seconds, 6),
            "ops_per_s": _r(delivered / seconds if seconds > 0 else 0.0, 2),
            "publish_seconds": _r(publish_seconds, 6),
            "expected": expected,
            "errors": self.errors,
        }


# ---------------------------------------------------------------------------------------
# Notification workloads

NOTIFY_EVENT_TYPE = "bench.notify"
NOTIFY_PUBLISHER_ID = "bench"
NOTIFY_WARMUP = 2  # notifications per thread before measuring (not counted)


class NotifyErrors(logging.Handler):
    """Counts what oslo's notifier logs at ERROR instead of raising: a failed send
    (notify/messaging.py "Could not send notification", notify/notifier.py "Problem ...
    attempting to send")."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record):
        self.count += 1  # (a race loses at most a count; only 0 matters)


class BrokerQueue:
    """Counts and purges one queue with py-amqp directly (outside oslo), on the first host
    of the oslo transport URL. Every call opens and closes its own connection."""

    def __init__(self, conf, url, name):
        parsed = oslo_messaging.TransportURL.parse(conf, url)
        host = parsed.hosts[0] if parsed.hosts else None
        self.kwargs = {
            "host": "%s:%s" % (host.hostname or "127.0.0.1", host.port or 5672)
            if host else "127.0.0.1:5672",
            "userid": (host.username if host else None) or "guest",
            "password": (host.password if host else None) or "guest",
            "virtual_host": parsed.virtual_host or "/",
        }
        self.name = name

    def _run(self, fn):
        import amqp
        conn = amqp.Connection(**self.kwargs)
        conn.connect()
        try:
            return fn(conn.channel())
        except amqp.exceptions.NotFound:
            return None
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def depth(self):
        """Messages ready in the queue; None if it does not exist."""
        ok = self._run(lambda ch: ch.queue_declare(self.name, passive=True))
        return None if ok is None else ok.message_count

    def purge(self):
        return self._run(lambda ch: ch.queue_purge(self.name))


class Counter:
    """The listener's endpoint: info() counts and notes when the count reached `target`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.count = 0
        self.target = None
        self.t_first = None
        self.t_target = None
        self.t_last = None

    def reset(self, target=None):
        with self._lock:
            self.count = 0
            self.target = target
            self.t_first = self.t_target = self.t_last = None

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        now = time.monotonic()
        with self._cond:
            self.count += 1
            self.t_last = now
            if self.t_first is None:
                self.t_first = now
            if self.target is not None and self.count == self.target:
                self.t_target = now
            self._cond.notify_all()

    def wait(self, n, deadline):
        """Wait until count >= n or `deadline` (monotonic); returns the count."""
        with self._cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return self.count


class NotifyBench(Bench):
    """notify-publish, notify-consume, notify-deliver (see the module docstring)."""

    def __init__(self, args, out):  # not Bench.__init__: that one makes RPC clients
        self.args = args
        self.out = out
        self.timeout = CALL_TIMEOUT
        self.hard_deadline = _T0 + args.seconds + HARD_MARGIN
        self.payload = "x" * args.payload_bytes
        self.errors = 0
        self.errors_lock = threading.Lock()
        self.partial = {}
        self.partial_fn = None
        url, control_exchange = split_control_exchange(args.url)
        conf = make_conf(control_exchange, "amqp-rpc-bench")
        self.transport = oslo_messaging.get_notification_transport(conf, url=url)
        self.transports = [self.transport]
        self.notifier = oslo_messaging.Notifier(
            self.transport, publisher_id=NOTIFY_PUBLISHER_ID, driver=args.driver,
            topics=[args.topic])
        self.thread_clients = [self.notifier] * args.concurrency
        self.queue = BrokerQueue(conf, url, f"{args.topic}.info")
        self.send_errors = NotifyErrors()
        logging.getLogger("oslo_messaging.notify").addHandler(self.send_errors)
        self.counter = Counter()
        self.listener = None

    def notify_one(self, notifier):
        notifier.info({}, NOTIFY_EVENT_TYPE, self.payload)

    def start_listener(self):
        """A notification listener (threading executor, oslo's defaults: 64 worker
        threads, no prefetch limit) on <topic>.info of the control exchange."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # executor=, see run_server
            self.listener = oslo_messaging.get_notification_listener(
                self.transport, [oslo_messaging.Target(topic=self.args.topic)],
                [self.counter], executor="threading")
        self.listener.start()
        wait_consuming(self.listener)

    def stop_listener(self, timeout=10.0):
        listener, self.listener = self.listener, None
        if listener is None:
            return

        def stop():
            listener.stop()
            listener.wait()

        thread = threading.Thread(target=stop, name="stop-listener", daemon=True)
        thread.start()
        thread.join(max(0.0, min(timeout, self.hard_deadline - 1.0 - time.monotonic())))

    def warm_up(self):
        """Each thread publishes NOTIFY_WARMUP notifications (opens the pooled
        connections, declares the exchange and the queue); then the queue is purged. For
        notify-deliver, the listener runs first and must receive them all."""
        deadline = time.monotonic() + WARMUP_SECONDS
        if self.args.workload == "notify-deliver":
            self.start_listener()
        self.queue.purge()  # leftovers of an interrupted run
        self.counter.reset()
        failures = []

        def one(i):
            try:
                for _ in range(NOTIFY_WARMUP):
                    self.notify_one(self.thread_clients[i])
            except Exception as e:  # noqa: BLE001
                failures.append(e)

        stuck = self.run_threads(one, deadline, "warmup")
        if failures:
            raise failures[0]
        if stuck:
            raise RuntimeError(f"warm-up took over {WARMUP_SECONDS:g} s")
        if self.send_errors.count:
            raise RuntimeError("warm-up: oslo logged %d send failures"
                               % self.send_errors.count)
        if self.listener is not None:
            want = NOTIFY_WARMUP * self.args.concurrency
            if self.counter.wait(want, deadline) < want:
                raise RuntimeError(f"warm-up: the listener got {self.counter.count} of "
                                   f"{want} notifications in {WARMUP_SECONDS:g} s")
            time.sleep(0.1)  # let the acks go out
        self.queue.purge()
        self.counter.reset()

    def publish_notifications(self, n):
        """publish() of Bench with notifier.info(); send failures that oslo only logged
        count as errors too. Returns (t_first, publish_seconds, published)."""
        before_errors, before_logged = self.errors, self.send_errors.count
        t_first, publish_seconds = self.publish(self.notify_one, n)
        logged = self.send_errors.count - before_logged
        self.add_errors(logged)
        return t_first, publish_seconds, n - (self.errors - before_errors)

    def notify_publish(self):
        n = self.args.count
        self.partial.update(ops=0, expected=n)
        _, seconds, published = self.publish_notifications(n)
        queued = self.queue.depth()
        self.queue.purge()
        return {
            "ops": published,
            "seconds": _r(seconds, 6),
            "ops_per_s": _r(published / seconds if seconds > 0 else 0.0, 2),
            "expected": n,
            "queued": queued,
            "errors": self.errors,
        }

    def notify_consume(self):
        n = self.args.count
        _, fill_seconds, published = self.publish_notifications(n)
        queued = self.queue.depth()
        self.partial.update(ops=0, expected=n, queued=queued,
                            fill_seconds=_r(fill_seconds, 6))
        if queued is None or queued < n:
            self.queue.purge()
            raise RuntimeError(f"pre-fill: {queued} of {n} notifications in the queue "
                               f"(the fill is bounded by S seconds too)")
        self.counter.reset(n)
        t0 = time.monotonic()
        self.partial_fn = lambda: dict(self.partial, ops=self.counter.count,
                                       seconds=_r(time.monotonic() - t0, 6))
        self.start_listener()
        t_consuming = time.monotonic()
        delivered = self.counter.wait(n, t0 + self.args.seconds)
        t_end = self.counter.t_target if delivered >= n else time.monotonic()
        t_first = self.counter.t_first
        self.stop_listener()
        seconds = t_end - t0
        return {
            "ops": min(delivered, n),  # (requeues: none, the endpoint returns None)
            "seconds": _r(seconds, 6),
            "ops_per_s": _r(min(delivered, n) / seconds if seconds > 0 else 0.0, 2),
            "expected": n,
            "start_seconds": _r(t_consuming - t0, 6),
            "first_seconds": _r(None if t_first is None else t_first - t0, 6),
            "fill_seconds": _r(fill_seconds, 6),
            "errors": self.errors,
        }

    def notify_deliver(self):
        n = self.args.count
        self.counter.reset(n)
        self.partial.update(ops=0, expected=n)
        t_first, publish_seconds, _ = self.publish_notifications(n)
        self.partial.update(publish_seconds=_r(publish_seconds, 6))
        self.partial_fn = lambda: dict(self.partial, ops=self.counter.count,
                                       seconds=_r(time.monotonic() - t_first, 6))
        delivered = self.counter.wait(n, t_first + self.args.seconds)
        if delivered >= n:
            t_end = self.counter.t_target
        else:
            t_end = self.counter.t_last or time.monotonic()
        self.stop_listener()
        return self.delivery_result(min(delivered, n), t_end - t_first, publish_seconds, n)


def run_client(args, out):
    bench = None
    try:
        cls = NotifyBench if args.workload.startswith("notify-") else Bench
        bench = cls(args, out)
        bench.start_watchdog()
        bench.warm_up()
        result = getattr(bench, args.workload.replace("-", "_"))()
        code = 0
    except Exception as e:  # noqa: BLE001
        LOG.error("%s run failed", args.workload, exc_info=True)
        result = dict(bench.partial if bench else {},
                      errors=bench.errors if bench else 0,
                      error=f"{type(e).__name__}: {e}")
        code = 1
    if not out.result(result):  # the watchdog got there first and is exiting
        time.sleep(60)
    if bench is not None:
        cleanup_transports(bench.transports,
                           max(0.0, min(2.0, bench.hard_deadline - time.monotonic())))
    return code


# ---------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="oslo.messaging side of the amqp-rpc benchmark (see the module "
                    "docstring).")
    sub = parser.add_subparsers(dest="mode", required=True)

    s = sub.add_parser("server", help="run a benchmark RPC server")
    s.add_argument("--url", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--server", required=True)
    s.add_argument("--pool", type=int, default=64, help="executor_thread_pool_size")

    c = sub.add_parser("client", help="run one workload, print one JSON object")
    c.add_argument("--url", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--workload", required=True,
                   choices=("calls", "casts", "fanout", "recovery", "notify-publish",
                            "notify-consume", "notify-deliver"))
    c.add_argument("--seconds", type=float, default=10.0)
    c.add_argument("--concurrency", type=int, default=1)
    c.add_argument("--payload-bytes", type=int, default=100)
    c.add_argument("--count", type=int, default=1000)
    c.add_argument("--servers", type=int, default=None)
    c.add_argument("--call-timeout", type=float, default=30.0,
                   help="seconds; recovery only (the other workloads use 10)")
    c.add_argument("--client-mode", default="shared",
                   choices=("shared", "per-thread", "per-transport"))
    c.add_argument("--driver", default="messagingv2", choices=("messagingv2", "messaging"),
                   help="notification driver (notify-* workloads)")
    args = parser.parse_args(argv)

    for name in ("concurrency", "pool", "count", "servers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.mode == "client" and (args.seconds <= 0 or args.payload_bytes < 0
                                  or args.call_timeout <= 0):
        parser.error("--seconds and --call-timeout must be positive and --payload-bytes "
                     "not negative")

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="oslo_bench[%(process)d] %(levelname)s %(name)s: "
                               "%(message)s")
    out = Output()
    if args.mode == "server":
        return run_server(args, out)
    return run_client(args, out)


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        code = 2
    sys.stderr.flush()
    # Non-daemon threads of the driver (connection pool, heartbeats) must not keep a
    # finished process alive.
    os._exit(code)
