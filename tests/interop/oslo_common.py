"""What the two Python oslo.messaging (18.3.1) peers share: tests/interop/peer.py (the
interop tests' peer) and bench/oslo_bench.py (the benchmark's), which imports this module
from tests/interop.

Importing it silences eventlet's deprecation warning and imports oslo.messaging.
"""

import importlib
import os
import sys
import time
from urllib import parse
import warnings

# Importing oslo.messaging imports eventlet (through oslo.service), which warns about its
# own deprecation on every start; neither peer uses eventlet.
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402


def make_conf(control_exchange, project):
    """A private ConfigOpts, made usable with oslo.messaging 18.3.1.

    oslo.messaging registers two option groups on the global cfg.CONF only, at import,
    yet reads them from the transport's own conf: [oslo_messaging_tracing] (new in
    18.3.x; tracing_enabled, read by RPCClient.call()/cast() and by the RPC server for
    every request) and [oslo_messaging_metrics] (metrics_enabled, read by call()/cast()).
    With a bare private ConfigOpts, call()/cast() raise NoSuchOptError (tracing first,
    then metrics once tracing is registered), and an RPC server acks every request and
    never answers it (its callers time out; nothing is logged at WARNING). Registering
    the same option lists on the private instance, as oslo_messaging.conffixture does,
    fixes both.
    """
    conf = cfg.ConfigOpts()
    conf(args=[], project=project, default_config_files=[], default_config_dirs=[])
    for module, attr in (("oslo_messaging._metrics.client", "oslo_messaging_metrics"),
                         ("oslo_messaging._tracing.client", "oslo_messaging_tracing")):
        try:
            opts = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):  # not in this oslo.messaging version
            continue
        conf.register_opts(opts, group=attr)
    if control_exchange:
        # Changes the default of the [DEFAULT] control_exchange option, which
        # get_rpc_transport() registers and reads.
        oslo_messaging.set_transport_defaults(control_exchange)
    return conf


def split_control_exchange(url):
    """Return `url` without its control_exchange query parameter, and that parameter's
    value (the last one if repeated; None if absent). Other parameters are kept in order.

    amqp-rpc's URLs may carry control_exchange; oslo would refuse it in the URL, being a
    [DEFAULT] option, so the peers take it out and use it as the control exchange."""
    parts = parse.urlsplit(url)
    query = parse.parse_qsl(parts.query, keep_blank_values=True)
    values = [value for name, value in query if name == "control_exchange"]
    if not values:
        return url, None
    rest = [(name, value) for name, value in query if name != "control_exchange"]
    return parse.urlunsplit(parts._replace(query=parse.urlencode(rest))), values[-1]


def wait_consuming(server, timeout=10.0):
    """Return once the server's listener has issued basic.consume on all its queues.

    start() declares and binds the queues (so nothing published afterwards is lost), but
    the consumers are registered a moment later by the listener's poll thread. Waiting
    makes "started" mean "consuming", e.g. for round-robin tests. Uses driver internals
    (impl_rabbit Connection._new_tags); falls back to a short sleep if they move.
    """
    try:
        conn = server.listener._poll_style_listener.conn.connection
        conn._new_tags  # noqa: B018 - probe the attribute
    except AttributeError:
        time.sleep(0.3)
        return
    deadline = time.monotonic() + timeout
    while conn._new_tags and time.monotonic() < deadline:
        time.sleep(0.005)


def claim_stdout():
    """A text file on the original stdout, which then carries nothing else: file
    descriptor 1 and sys.stdout are pointed at stderr, so stray prints of libraries
    cannot corrupt the peer's protocol or result lines."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out
