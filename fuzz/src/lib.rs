//! What the fuzz targets check amqp-rpc's decoding against: oslo's `deserialize_msg` and
//! `unpack_context` written plainly on serde_json's `Value`, with none of the crate's fast
//! paths (its own key visitors, the one-pass unescaping of the usual envelope).

use amqp_rpc::Version;
use serde_json::{Map, Value};

/// What plain serde_json makes of an AMQP body, read as oslo's `deserialize_msg` reads it.
#[derive(Debug)]
pub enum Plain {
    /// serde_json refuses the body or the envelope's inner message. amqp-rpc may accept what
    /// Python writes and serde_json refuses (NaN, Infinity, lone surrogates, integers beyond
    /// 64 bits), so nothing is asserted of such input.
    Refused,
    /// The message: the envelope's inner object, or the body itself when it is not enveloped.
    Message {
        /// The message's fields.
        fields: Map<String, Value>,
        /// Whether its text holds an integer beyond 64 bits, which serde_json reads as a float
        /// and amqp-rpc's request and reply decoding, as Python does, as the integer.
        big_integer: bool,
    },
    /// The body, or the envelope's inner message, is JSON but not an object.
    NotAnObject,
    /// An envelope whose `oslo.version` is not compatible with 2.0.
    UnsupportedEnvelope,
    /// An envelope whose `oslo.message` is not a string.
    MessageNotAString,
}

/// Opens `body` with serde_json alone.
pub fn open_plain(body: &[u8]) -> Plain {
    let outer = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(outer)) => outer,
        Ok(_) => return Plain::NotAnObject,
        Err(_) => return Plain::Refused,
    };
    let (Some(version), Some(message)) = (outer.get("oslo.version"), outer.get("oslo.message"))
    else {
        let big_integer = has_big_integer(body);
        return Plain::Message {
            fields: outer,
            big_integer,
        };
    };
    let compatible = version
        .as_str()
        .and_then(|v| v.parse::<Version>().ok())
        .is_some_and(|v| Version::new(2, 0).is_compatible(&v));
    if !compatible {
        return Plain::UnsupportedEnvelope;
    }
    let Some(inner) = message.as_str() else {
        return Plain::MessageNotAString;
    };
    match serde_json::from_str::<Value>(inner) {
        Ok(Value::Object(fields)) => Plain::Message {
            fields,
            big_integer: has_big_integer(inner.as_bytes()),
        },
        Ok(_) => Plain::NotAnObject,
        Err(_) => Plain::Refused,
    }
}

/// Whether `body` holds what Python's `json.dumps` writes and serde_json refuses: `NaN`,
/// `Infinity`, a `\u` escape of a surrogate, or an integer beyond 64 bits (serde_json refuses
/// one beyond the range of a float). Only such a body may open where serde_json refuses it.
///
/// An envelope's `oslo.message` is JSON text inside a string: it is looked at too, unescaped.
pub fn has_python_extension(body: &[u8]) -> bool {
    let surrogate = |w: &[u8]| w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D');
    let inner = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(outer)) => match outer.get("oslo.message") {
            Some(serde_json::Value::String(inner)) => has_big_integer(inner.as_bytes()),
            _ => false,
        },
        _ => false,
    };
    body.windows(3).any(|w| w == b"NaN" || surrogate(w))
        || body.windows(8).any(|w| w == b"Infinity")
        || has_big_integer(body)
        || inner
}

/// Whether JSON text that serde_json reads holds an integer literal no 64-bit integer holds.
pub fn has_big_integer(text: &[u8]) -> bool {
    let number_byte = |b: &u8| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E');
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        match byte {
            // A string: skipped to its closing quote.
            b'"' => {
                at += 1;
                while let Some(&byte) = text.get(at) {
                    at += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let rest = &text[at..];
                let length = rest.iter().position(|b| !number_byte(b));
                let literal = &rest[..length.unwrap_or(rest.len())];
                let literal = std::str::from_utf8(literal).unwrap_or_default();
                let integer = literal.bytes().all(|b| b == b'-' || b.is_ascii_digit());
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    return true;
                }
                at += literal.len().max(1);
            }
            _ => at += 1,
        }
    }
    false
}

/// The body as text for an assertion's message.
pub fn shown(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}
