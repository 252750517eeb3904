//! Server-side request decoding on any bytes: it never panics, gives what oslo's
//! `unpack_context` gives on every body plain serde_json reads as Python does, and a request
//! it decodes encodes as a call and decodes again to the same method, arguments and context.

#![no_main]

use amqp_rpc::__private_v1::wire_steps::{decode_request, encode_call};
use amqp_rpc::Context;
use amqp_rpc_fuzz::{Plain, open_plain, shown};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|body: &[u8]| {
    let (method, args, context) = match (decode_request(body), open_plain(body)) {
        (
            Ok(decoded),
            Plain::Message {
                fields,
                big_integer,
            },
        ) => {
            let mut expected = Context::new();
            for (key, value) in &fields {
                if let Some(name) = key.strip_prefix("_context_") {
                    expected.insert(name, value.clone());
                }
            }
            let timeout = fields.get("_timeout").cloned().unwrap_or(Value::Null);
            expected.insert("client_timeout", timeout);
            let method = fields
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let args = fields.get("args").cloned();
            let args = args.unwrap_or_else(|| Value::Object(Map::new()));
            // serde_json reads an integer beyond 64 bits as a float, amqp-rpc as the integer.
            if !big_integer {
                assert_eq!(decoded, (method, args, expected), "{}", shown(body));
            }
            decoded
        }
        (Ok(decoded), _) => decoded,
        (Err(e), Plain::Message { .. }) => {
            panic!(
                "serde_json reads a request that fails: {e}: {}",
                shown(body)
            )
        }
        (Err(_), _) => return,
    };
    // A request that re-encodes (a method name, arguments that are an object) decodes again to
    // the same; `client_timeout` comes from `_timeout`, which a call without one sends as null.
    let (Some(method), Value::Object(_)) = (method, &args) else {
        return;
    };
    let mut context = context;
    context.remove("client_timeout");
    let body = encode_call(&context, &method, &args, "reply_q").unwrap_or_else(|e| panic!("{e}"));
    context.insert("client_timeout", Value::Null);
    let again = decode_request(&body).unwrap_or_else(|e| panic!("{e}: {}", shown(&body)));
    assert_eq!(again, (Some(method), args, context), "{}", shown(&body));
});
