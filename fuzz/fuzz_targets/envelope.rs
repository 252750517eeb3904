//! `amqp_rpc::wire::open` on any bytes: it never panics, agrees with plain serde_json on every
//! body serde_json reads, opens a body serde_json refuses only for what Python writes that
//! serde_json refuses, and what it opens seals and opens again to the same.

#![no_main]

use amqp_rpc::wire::{WireError, open, seal};
use amqp_rpc_fuzz::{Plain, has_python_extension, open_plain, shown};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let opened = open(body);
    match (open_plain(body), &opened) {
        // amqp-rpc reads what Python writes and serde_json refuses, and nothing else.
        (Plain::Refused, Ok(_)) => {
            assert!(has_python_extension(body), "opened: {}", shown(body));
        }
        (Plain::Refused, Err(_)) => {}
        (
            Plain::Message {
                fields: expected, ..
            },
            Ok(message),
        ) => {
            assert_eq!(message, &expected, "{}", shown(body));
        }
        (Plain::NotAnObject, Err(WireError::NotAnObject))
        | (Plain::UnsupportedEnvelope, Err(WireError::UnsupportedEnvelope { .. }))
        | (Plain::MessageNotAString, Err(WireError::BadField { .. })) => {}
        (plain, opened) => panic!(
            "serde_json: {plain:?}, open: {opened:?}, body {}",
            shown(body)
        ),
    }
    if let Ok(message) = opened {
        let text = serde_json::to_string(&message).unwrap_or_else(|e| panic!("{e}"));
        let again = open(&seal(&text)).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(again, message, "resealed {text}");
    }
});
