//! Client-side reply decoding on any bytes: it never panics, agrees with plain serde_json on
//! every body serde_json reads as Python does, and a result it decodes encodes (as a `Value` and
//! typed) and decodes again to the same.

#![no_main]

use amqp_rpc::__private_v1::wire_steps::{decode_reply, encode_reply};
use amqp_rpc::Returned;
use amqp_rpc_fuzz::{Plain, open_plain, shown};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let decoded = decode_reply(body);
    if let Plain::Message {
        fields,
        big_integer,
    } = open_plain(body)
    {
        let has_msg_id = fields.get("_msg_id").is_some_and(Value::is_string);
        let no_failure = fields.get("failure").is_none_or(Value::is_null);
        match &decoded {
            Ok(result) => {
                assert!(
                    has_msg_id,
                    "a reply without a string _msg_id: {}",
                    shown(body)
                );
                // serde_json reads an integer beyond 64 bits as a float, amqp-rpc as the integer.
                if !big_integer {
                    let expected = fields.get("result").unwrap_or(&Value::Null);
                    assert_eq!(result, expected, "{}", shown(body));
                }
            }
            // A failure that is not a serialized exception is refused, as oslo refuses it.
            Err(e) => assert!(!(has_msg_id && no_failure), "{e}: {}", shown(body)),
        }
    }
    if let Ok(result) = decoded {
        // As a `Value`, and as a typed result encoded straight into the reply.
        let typed = Returned::encode(&result).unwrap_or_else(|e| panic!("{e}: {result}"));
        let body = encode_reply(
            Returned::from(result.clone()),
            "f7bf1089f6f9431db1932dec9c1313cf",
        );
        let again = decode_reply(&body).unwrap_or_else(|e| panic!("{e}: {}", shown(&body)));
        assert_eq!(again, result, "{}", shown(&body));
        let typed = encode_reply(typed, "f7bf1089f6f9431db1932dec9c1313cf");
        let again = decode_reply(&typed).unwrap_or_else(|e| panic!("{e}: {}", shown(&typed)));
        assert_eq!(again, result, "{}", shown(&typed));
    }
});
