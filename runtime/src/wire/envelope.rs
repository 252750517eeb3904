//! The "2.0" envelope: `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`.
//!
//! The inner message is JSON text inside a JSON string, so every message is encoded twice
//! over. Sealing serializes the inner message straight into the body already escaped (one
//! buffer, no intermediate text, no second pass: see [`super::escape`]). Opening an envelope laid
//! out as amqp-rpc or Python write it unescapes `oslo.message` in the pass that finds its end;
//! any other reads the envelope's two keys without building a JSON tree, then unescapes.

use std::io;

use serde::Deserialize;
use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::WireError;
use super::direct;
use super::escape::{Escaped, json_str, unescape_prefix};
use super::keys::{Key, KnownKeys};
use crate::version::Version;

/// The envelope version amqp-rpc sends and accepts.
pub const ENVELOPE_VERSION: &str = "2.0";

/// Everything before the inner message.
const PREFIX: &[u8] = br#"{"oslo.version":"2.0","oslo.message":""#;
/// Everything after it.
const SUFFIX: &[u8] = br#""}"#;

/// Wraps an encoded inner message (JSON text) in the 2.0 envelope, giving the AMQP body.
///
/// ```
/// let body = amqp_rpc::wire::seal(r#"{"method":"ping"}"#);
/// assert_eq!(
///     std::str::from_utf8(&body).unwrap(),
///     r#"{"oslo.version":"2.0","oslo.message":"{\"method\":\"ping\"}"}"#
/// );
/// ```
pub fn seal(inner_json: &str) -> Vec<u8> {
    let written: io::Result<_> = seal_with(inner_json.len() + inner_json.len() / 4, |out| {
        io::Write::write_all(out, inner_json.as_bytes())
    });
    // Writing to a Vec cannot fail.
    written.unwrap_or_default()
}

/// Builds a body: the envelope around whatever `write_inner` writes, escaped as the contents
/// of a JSON string. `capacity` is a guess at the body's size.
pub(crate) fn seal_with<E>(
    capacity: usize,
    write_inner: impl FnOnce(&mut Escaped<'_>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut body = seal_open(capacity, |body| write_inner(&mut Escaped::new(body)))?;
    seal_close(&mut body);
    Ok(body)
}

/// The start of a body: the envelope's prefix, then whatever `write` appends (it must write
/// the inner message escaped, as [`Escaped`] does); [`seal_close`] ends it.
pub(crate) fn seal_open<E>(
    capacity: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut body = Vec::with_capacity(PREFIX.len() + capacity + SUFFIX.len());
    body.extend_from_slice(PREFIX);
    write(&mut body)?;
    Ok(body)
}

/// Ends a body begun by [`seal_open`].
pub(crate) fn seal_close(body: &mut Vec<u8>) {
    body.extend_from_slice(SUFFIX);
}

/// Decodes an AMQP body into the inner message object, as oslo's `deserialize_msg` does: an
/// object holding both `oslo.version` and `oslo.message` is an envelope (its version must be
/// compatible with 2.0); any other object is an un-enveloped message, used as it is.
///
/// ```
/// use amqp_rpc::wire::open;
/// let inner = open(br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"ping\"}"}"#)?;
/// assert_eq!(inner["method"], "ping");
/// let bare = open(br#"{"method": "ping"}"#)?;
/// assert_eq!(bare["method"], "ping");
/// assert!(open(br#"{"oslo.version": "2.1", "oslo.message": "{}"}"#).is_err());
/// # Ok::<(), amqp_rpc::wire::WireError>(())
/// ```
pub fn open(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    decode(body)
}

/// Bodies from this length on are read by [`direct::open`] first. Below it the general path
/// costs less: a 100 B call's reply took 3.6 K instructions more the direct way, a 1 KiB
/// call's 0.8 K more, a 2 KiB call's 1.7 K fewer and a 4 KiB call's 7 K fewer (callgrind,
/// `bench/examples/calls.rs`).
const DIRECT_FROM: usize = 1536;

/// Decodes an AMQP body (enveloped or not, as [`open`]) straight into `T`, which must
/// deserialize from a JSON object.
///
/// JSON that serde_json refuses is read again as Python writes it (`NaN`, lone surrogates:
/// see [`super::python`]).
///
/// A long message is read in one pass ([`direct::open`]) and `T` decoded from its members,
/// in their order, as `Value`s. Where that reader gives up, or `T` does not decode from
/// `Value`s (it borrows from the text), the body is read as [`decode_general`] reads it.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.len() >= DIRECT_FROM
        && let Some(members) = direct::open(body)
    {
        let members = MapDeserializer::<_, serde_json::Error>::new(members.into_iter());
        if let Ok(decoded) = T::deserialize(members) {
            return Ok(decoded);
        }
    }
    decode_general(body)
}

/// [`decode`] without the one-pass reader.
pub(crate) fn decode_general<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    decode_as(body, false)
}

/// [`decode`]; with `python`, the message is read as Python writes it even where serde_json
/// takes it (for integers beyond 64 bits, which serde_json reads as floats).
pub(crate) fn decode_as<T: DeserializeOwned>(body: &[u8], python: bool) -> Result<T, WireError> {
    match open_usual(body) {
        // Parsed as text: it is known to be UTF-8, so its strings are not checked again.
        Some(inner) => parse_python(Text(&inner), python),
        None => decode_any(body, python),
    }
}

/// [`decode`] for any body: the envelope's keys found by serde_json, then its message
/// unescaped and parsed.
pub(super) fn decode_any<T: DeserializeOwned>(body: &[u8], python: bool) -> Result<T, WireError> {
    // serde_json checks the UTF-8 of the strings it reads, not of those it skips (the values
    // of other keys): the whole body is checked here, as Python decodes it before parsing.
    let text = match std::str::from_utf8(body) {
        Ok(text) => Text(text),
        Err(e) => {
            return Err(WireError::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            });
        }
    };
    let outer: Outer<'_> = match parse_object(text) {
        Ok(outer) => outer,
        // An un-enveloped message as Python writes it.
        Err(WireError::Json(e)) => match super::python::normalize(body) {
            Some(normalized) => return decode_any(&normalized, python),
            None => return Err(WireError::Json(e)),
        },
        Err(e) => return Err(e),
    };
    let (Some(version), Some(message)) = (outer.version, outer.message) else {
        return parse_python(text, python);
    };
    let compatible = json_str(version)
        .and_then(|v| v.parse::<Version>().ok())
        .is_some_and(|v| Version::new(2, 0).is_compatible(&v));
    if !compatible {
        return Err(WireError::UnsupportedEnvelope {
            version: version.get().to_owned(),
        });
    }
    let inner = json_str(message).ok_or(WireError::BadField {
        field: "oslo.message",
        expected: "string",
    })?;
    // Parsed as text: it is known to be UTF-8, so its strings are not checked again.
    parse_python(Text(&inner), python)
}

/// [`parse_object`], reading the text again as Python writes it when serde_json refuses it,
/// or at once with `python`.
fn parse_python<'a, T: DeserializeOwned>(
    text: impl JsonInput<'a>,
    python: bool,
) -> Result<T, WireError> {
    let refused = match python {
        true => None,
        false => match parse_object(text) {
            Err(WireError::Json(e)) => Some(e),
            parsed => return parsed,
        },
    };
    match (super::python::normalize(text.bytes()), refused) {
        (Some(normalized), _) => parse_object(&normalized[..]),
        (None, Some(e)) => Err(WireError::Json(e)),
        (None, None) => parse_object(text),
    }
}

/// The beginnings of an envelope as amqp-rpc and as Python's `json.dumps` write it, up to the
/// inner message's opening quote.
pub(super) const USUAL_PREFIXES: [&[u8]; 2] =
    [PREFIX, br#"{"oslo.version": "2.0", "oslo.message": ""#];

/// The inner message of an envelope laid out as amqp-rpc or Python write it, unescaped in
/// the one pass that finds its end. `None` for any other body (other keys or key order,
/// another version, anything serde_json would refuse), which the general path then reads:
/// for the bodies it takes, this gives what the general path would.
pub(super) fn open_usual(body: &[u8]) -> Option<String> {
    let rest = USUAL_PREFIXES.iter().find_map(|p| body.strip_prefix(*p))?;
    let (inner, after) = unescape_prefix(rest)?;
    ends_usual(after?).then_some(inner)
}

/// Whether `after`, what follows the closing quote of a usual envelope's message, ends the
/// envelope: its `}`, then nothing but whitespace.
pub(super) fn ends_usual(after: &[u8]) -> bool {
    after.strip_prefix(b"}").is_some_and(|rest| {
        rest.iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    })
}

/// JSON input: bytes (an AMQP body), or [`Text`] already known to be UTF-8.
trait JsonInput<'a>: Copy {
    fn bytes(self) -> &'a [u8];
    fn parse<T: Deserialize<'a>>(self) -> serde_json::Result<T>;
}

impl<'a> JsonInput<'a> for &'a [u8] {
    fn bytes(self) -> &'a [u8] {
        self
    }
    fn parse<T: Deserialize<'a>>(self) -> serde_json::Result<T> {
        serde_json::from_slice(self)
    }
}

/// A JSON text known to be UTF-8: serde_json reads its strings without checking them again.
#[derive(Clone, Copy)]
struct Text<'a>(&'a str);

impl<'a> JsonInput<'a> for Text<'a> {
    fn bytes(self) -> &'a [u8] {
        self.0.as_bytes()
    }
    fn parse<T: Deserialize<'a>>(self) -> serde_json::Result<T> {
        serde_json::from_str(self.0)
    }
}

/// Parses `text` as a JSON object into `T`; a JSON value that is not an object is
/// [`WireError::NotAnObject`].
fn parse_object<'a, T: Deserialize<'a>>(text: impl JsonInput<'a>) -> Result<T, WireError> {
    let first = text.bytes().iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match text.parse::<IgnoredAny>() {
            Ok(_) => WireError::NotAnObject,
            Err(e) => WireError::Json(e),
        });
    }
    text.parse().map_err(WireError::Json)
}

/// The envelope's two keys, borrowed from the body; every other key is skipped. A repeated
/// key keeps its last value, as Python's `json.loads` does.
struct Outer<'a> {
    version: Option<&'a RawValue>,
    message: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Outer<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OuterVisitor;
        impl<'de> Visitor<'de> for OuterVisitor {
            type Value = Outer<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outer<'de>, A::Error> {
                let mut outer = Outer {
                    version: None,
                    message: None,
                };
                while let Some(key) = map.next_key::<Key<OuterKey>>()? {
                    match key.0 {
                        Some(OuterKey::Version) => outer.version = Some(map.next_value()?),
                        Some(OuterKey::Message) => outer.message = Some(map.next_value()?),
                        None => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(outer)
            }
        }
        deserializer.deserialize_map(OuterVisitor)
    }
}

#[derive(Clone, Copy)]
enum OuterKey {
    Version,
    Message,
}

impl KnownKeys for OuterKey {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "oslo.version" => Some(OuterKey::Version),
            "oslo.message" => Some(OuterKey::Message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    #[test]
    fn seal_then_open_round_trips() {
        let inner = json!({"method": "add", "args": {"a": "ü \"q\" \n \\ \u{1} 😀"}}).to_string();
        let body = seal(&inner);
        let outer: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(outer["oslo.version"], "2.0");
        assert_eq!(outer["oslo.message"], Value::String(inner.clone()));
        let opened = open(&body).map(Value::Object).ok();
        assert_eq!(opened, serde_json::from_str(&inner).ok());
    }

    #[test]
    fn escaped_writer_matches_serde_json_for_any_text() {
        let texts = [
            String::new(),
            "plain".to_owned(),
            "\"\\\u{0}\u{1f}\u{7f}é😀\n\t/".to_owned(),
            (0u8..=127).map(char::from).collect(),
        ];
        for text in texts {
            let body = seal(&text);
            let outer: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(outer["oslo.message"], Value::String(text.clone()));
        }
    }

    /// Serializing in place must give exactly the bytes of escaping the compact JSON text.
    fn assert_serializes_as_sealed_text<T: Serialize + ?Sized>(value: &T) {
        let in_place = seal_with(0, |out| out.serialize(value)).map_err(|e| e.to_string());
        let text = serde_json::to_string(value).map_err(|e| e.to_string());
        assert_eq!(
            in_place.map(String::from_utf8),
            text.map(|text| String::from_utf8(seal(&text))),
        );
    }

    #[test]
    fn serializing_in_place_gives_the_bytes_of_sealing_the_compact_text() {
        let every_ascii: String = (0u8..=127).map(char::from).collect();
        let values = [
            json!(null),
            json!(true),
            json!(-12),
            json!(u64::MAX),
            json!(0.1),
            json!(-1.5e300),
            json!(""),
            json!("plain"),
            json!(every_ascii),
            json!("\"\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f} é 😀 \\\""),
            json!({"k\"ey\\": ["a", {"nested": "\"q\""}, [], {}], "": "", "n": 1}),
            json!([1, "two", [3.25, null, false]]),
        ];
        for value in &values {
            assert_serializes_as_sealed_text(value);
        }
        // Raw JSON text is escaped byte by byte.
        let raw = RawValue::from_string(r#"{"a":"\"b\\","c":[1]}"#.to_owned());
        assert!(raw.is_ok());
        if let Ok(raw) = raw {
            assert_serializes_as_sealed_text(&raw);
        }
    }

    #[test]
    fn the_usual_envelope_opens_as_any_envelope_does() {
        let every_ascii: String = (0u8..=127).map(char::from).collect();
        let inner_texts = [
            json!({"method": "echo", "args": {"s": every_ascii}}).to_string(),
            json!({"a": "ü \"q\" \n \\ \u{1} 😀 \u{7f}", "b": [1, 2.5, null]}).to_string(),
            r#"{"s": "\u00fc\ud83d\ude00 \/"}"#.to_owned(),
            "{}".to_owned(),
            "[1]".to_owned(),
            "{".to_owned(),
        ];
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for inner in &inner_texts {
            let ours = seal(inner);
            let python = [
                &br#"{"oslo.version": "2.0", "oslo.message": "#[..],
                &serde_json::to_vec(inner).unwrap_or_default(),
                b"}",
            ]
            .concat();
            for body in [ours, python] {
                bodies.push([&body[..], b"\n"].concat());
                bodies.push([&body[..], b"x"].concat());
                bodies.push(body[..body.len() - 2].to_vec());
                bodies.push(body);
            }
        }
        for inside in [
            &b"\x01"[..],
            b"\xff",
            br"\x",
            br"\ud800",
            br"\udc00",
            br"\u12",
            b"\\",
        ] {
            bodies.push([PREFIX, inside, SUFFIX].concat());
        }
        bodies.push(br#"{"oslo.message": "{}", "oslo.version": "2.0"}"#.to_vec());
        bodies.push(br#"{"oslo.version":"2.0","oslo.message":"{}","other":1}"#.to_vec());
        bodies.push(br#"{"oslo.version":"2.1","oslo.message":"{}"}"#.to_vec());
        let mut usual = 0;
        for body in &bodies {
            let shown = String::from_utf8_lossy(body);
            let any = decode_any::<Map<String, Value>>(body, false).map_err(|e| e.to_string());
            if let Some(inner) = open_usual(body) {
                usual += 1;
                let fast = parse_object::<Map<String, Value>>(Text(&inner));
                assert_eq!(fast.map_err(|e| e.to_string()), any, "{shown}");
            }
            let decoded = decode::<Map<String, Value>>(body).map_err(|e| e.to_string());
            assert_eq!(decoded, any, "{shown}");
        }
        // Each inner text, in both layouts, as it is and with a newline after it.
        assert_eq!(
            usual,
            4 * inner_texts.len(),
            "the usual bodies take the fast path"
        );
    }

    #[test]
    fn python_style_envelope_with_spaces_and_escapes_opens() {
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {\"s\": \"\\u00fc\\ud83d\\ude00\"}}"}"#;
        let map = open(body).unwrap_or_default();
        assert_eq!(map["args"]["s"], "ü😀");
    }

    #[test]
    fn envelope_versions_other_than_2_0_are_refused() {
        for version in [
            r#""2.1""#,
            r#""3.0""#,
            r#""1.0""#,
            r#""2.0.1""#,
            "2.0",
            "null",
            r#""x""#,
        ] {
            let body = format!(r#"{{"oslo.version": {version}, "oslo.message": "{{}}"}}"#);
            assert!(
                matches!(
                    open(body.as_bytes()),
                    Err(WireError::UnsupportedEnvelope { .. })
                ),
                "{version} accepted"
            );
        }
        assert!(open(br#"{"oslo.version": "2.0.0", "oslo.message": "{}"}"#).is_ok());
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let body = br#"{"oslo.version": "9.9", "oslo.message": "[]", "oslo.version": "2.0", "oslo.message": "{\"a\": 1}"}"#;
        assert_eq!(open(body).unwrap_or_default()["a"], 1);
    }

    #[test]
    fn object_missing_either_envelope_key_is_unenveloped() {
        let map = open(br#"{"oslo.version": "9.9", "method": "m"}"#).unwrap_or_default();
        assert_eq!(map["method"], "m");
        assert_eq!(map["oslo.version"], "9.9");
    }

    #[test]
    fn non_objects_and_bad_json_are_errors() {
        assert!(matches!(open(b"[1]"), Err(WireError::NotAnObject)));
        assert!(matches!(open(b" \"s\""), Err(WireError::NotAnObject)));
        assert!(matches!(open(b"{"), Err(WireError::Json(_))));
        assert!(matches!(open(b"nope"), Err(WireError::Json(_))));
        assert!(matches!(
            open(b"\xff"),
            Err(WireError::NotUtf8 { valid_up_to: 0 })
        ));
        assert!(matches!(
            open(br#"{"oslo.version": "2.0", "oslo.message": "[1]"}"#),
            Err(WireError::NotAnObject)
        ));
        assert!(matches!(
            open(br#"{"oslo.version": "2.0", "oslo.message": {"a": 1}}"#),
            Err(WireError::BadField { .. })
        ));
        assert!(matches!(
            open(br#"{"oslo.version": "2.0", "oslo.message": "{\"a\": }"}"#),
            Err(WireError::Json(_))
        ));
    }
}
