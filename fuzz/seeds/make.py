"""Writes the seed corpora of the fuzz targets: bodies as oslo.messaging sends them.

The inner message goes through json.dumps as oslo_serialization's jsonutils.dumps does, and
the envelope through json.dumps again as kombu does (ensure_ascii, ", " and ": "), so the
seeds hold Python's escapes, and its NaN, Infinity, big integers and lone surrogates too.
Run from anywhere: python3 fuzz/seeds/make.py (it rewrites the seeds/<target>/ files).
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

MSG_ID = "f7bf1089f6f9431db1932dec9c1313cf"
REPLY_Q = "reply_dd16ef441b4e49eaa2e56f543aef0f11"
UNIQUE_ID = "fda5a1788ba1489d938fdfd581fbe416"
ODD_TEXT = 'ü 😀 "q" \\ / \n\t\r\b\f \x00 \x1f \x7f \u2028 \ufeff'


def envelope(message, **dumps):
    inner = json.dumps(message, **dumps)
    return json.dumps({"oslo.version": "2.0", "oslo.message": inner}, **dumps)


def compact(message):
    """The layout amqp-rpc writes: no spaces, UTF-8 left as it is."""
    return envelope(message, separators=(",", ":"), ensure_ascii=False)


def request(**fields):
    message = {"method": "add", "args": {"a": 1, "b": 2}}
    message.update(fields)
    return message


CALL = request(
    version="1.2",
    _msg_id=MSG_ID,
    _reply_q=REPLY_Q,
    _timeout=None,
    _unique_id=UNIQUE_ID,
    _context_user="u1",
    _context_project_id="p1",
    _context_roles=["admin"],
)

PYTHON_NUMBERS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "big": 2**70,
    "-big": -(2**64),
    "u64": 2**64 - 1,
    "-0": -0.0,
    "max": 1.7976931348623157e308,
    "tiny": 5e-324,
    "sum": 0.1 + 0.2,
    "e": 1e22,
}

REQUESTS = {
    "call": envelope(CALL),
    "call_compact": compact(CALL),
    "cast_namespace": envelope(
        request(
            namespace="ns",
            version="2.3.1",
            _unique_id=UNIQUE_ID,
            _context_request_id="req-abc",
            _context_nested={"a": [1, {"b": None}], "t": True},
        )
    ),
    "unenveloped": json.dumps(CALL),
    "odd_text": envelope(request(args={"s": ODD_TEXT, ODD_TEXT: [ODD_TEXT]})),
    "odd_text_compact": compact(request(args={"s": ODD_TEXT}, _context_x=ODD_TEXT)),
    "python_numbers": envelope(request(args=PYTHON_NUMBERS, _timeout=float("inf"))),
    "lone_surrogate": envelope(request(args={"s": "\ud800", "t": "x\udfff"})),
    "timeout": envelope(request(_msg_id="m", _reply_q="q", _timeout=4.5)),
    "version_null": envelope(request(version=None, namespace=None)),
    "no_args": envelope({"method": "ping", "_context_client_timeout": 3}),
    "repeated_keys": '{"method": 1, "method": "m", "args": [], "args": {"a": 1}, '
    '"_context_a": 1, "_context_a": 2}',
}

FAILURE = json.dumps(
    {
        "class": "KeyError",
        "module": "builtins",
        "message": "'missing'",
        "tb": ["Traceback (most recent call last):\n", '  File "x.py", line 1, in f\n'],
        "args": ["missing"],
        "kwargs": {},
    }
)


def reply(result=None, failure=None, ending=True, **extra):
    message = {
        "result": result,
        "failure": failure,
        "ending": ending,
        "_msg_id": MSG_ID,
        "_unique_id": UNIQUE_ID,
    }
    message.update(extra)
    return message


REPLIES = {
    "result": envelope(reply({"slept": 3})),
    "result_compact": compact(reply({"slept": 3})),
    "heartbeat": envelope(reply(ending=False)),
    "failure": envelope(reply(failure=FAILURE)),
    "failure_object": envelope(reply(failure=json.loads(FAILURE))),
    "failure_python2": envelope(
        reply(failure=json.dumps({"class": "ValueError", "module": "exceptions", "message": "m"}))
    ),
    "old_two_part": json.dumps({"result": 5, "_msg_id": MSG_ID}),
    "old_ending": json.dumps({"ending": True, "_msg_id": MSG_ID}),
    "odd_text": envelope(reply({"s": ODD_TEXT, ODD_TEXT: None})),
    "python_numbers": envelope(reply(PYTHON_NUMBERS)),
    "lone_surrogate": envelope(reply("\udbff\udbff")),
    "scalar_result": envelope(reply([1, "two", 3.25, None, False])),
}

ENVELOPES = {
    "version_2_1": json.dumps({"oslo.version": "2.1", "oslo.message": "{}"}),
    "version_2_0_0": json.dumps({"oslo.version": "2.0.0", "oslo.message": "{}"}),
    "version_number": '{"oslo.version": 2.0, "oslo.message": "{}"}',
    "message_object": '{"oslo.version": "2.0", "oslo.message": {"a": 1}}',
    "message_array": json.dumps({"oslo.version": "2.0", "oslo.message": "[1]"}),
    "keys_reversed": json.dumps({"oslo.message": '{"a": 1}', "oslo.version": "2.0"}),
    "extra_key": json.dumps({"oslo.version": "2.0", "oslo.message": "{}", "other": 1}),
    "trailing_space": envelope({"a": 1}) + " \n",
    "only_version": json.dumps({"oslo.version": "9.9", "method": "m"}),
    "notification_v1": json.dumps(
        {
            "message_id": "0f5d053f-e187-4fcd-9ade-0b4584c9c121",
            "publisher_id": "compute.host1",
            "event_type": "compute.instance.create.end",
            "priority": "INFO",
            "payload": {"id": 3, "when": {"__type__": "datetime", "__value__": "2020-01-02"}},
            "timestamp": "2026-11-21 13:17:53.278295",
            "_unique_id": UNIQUE_ID,
            "_context_user": "u1",
        }
    ),
    "not_an_object": json.dumps(["oslo.version", "2.0"]),
}


def write(target, bodies):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    for name, body in bodies.items():
        # Lone surrogates only appear escaped (ensure_ascii), except in the compact layout,
        # which never holds one.
        with open(os.path.join(folder, name + ".json"), "wb") as out:
            out.write(body.encode("utf-8"))


write("request", REQUESTS)
write("reply", REPLIES)
write(
    "envelope",
    {**ENVELOPES, **{"request_" + k: v for k, v in REQUESTS.items()},
     **{"reply_" + k: v for k, v in REPLIES.items()}},
)
