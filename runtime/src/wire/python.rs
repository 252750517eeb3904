//! Python's JSON: what `json.dumps` writes that serde_json refuses or changes, carried through
//! `serde_json::Value` and back out unchanged.
//!
//! Python writes `NaN`, `Infinity` and `-Infinity` for non-finite floats, `"\ud800"` for
//! strings holding lone surrogates (from `surrogateescape`d file names, say), and integers of
//! any size. serde_json refuses the first two, and turns integers beyond 64 bits into floats.
//! A message serde_json refuses (or whose values hint at a big integer) is read again here:
//! [`normalize`] rewrites each such value as a *marked string* — a noncharacter, a random
//! per-process nonce that no peer can know, a kind, the value — which `serde_json::Value`
//! holds. Typed decoding ([`Restore`]) turns marked strings back into the value for a
//! parameter type that can hold it (`f64` holds NaN; `u128` holds 2^64) and fails with a
//! `ValueError` for any other (a `Value` too: it would take NaN as `null`), and the encoders
//! ([`Py`]) write them back as Python wrote them, so a context relayed by a Rust service
//! reaches the next Python peer intact.
//! Rust's own non-finite floats are written as Python writes them, not as serde_json's `null`.
//!
//! The usual message never comes here: serde_json parses it, and the cost on that path is a
//! byte compare per string and a finiteness test per float when writing.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// The first character of a marked string: a Unicode noncharacter, reserved for internal use.
const MARK: char = '\u{FDD0}';
/// serde_json's private name for raw JSON text (`RawValue`); serializing a struct of this name
/// writes the string of each field given it as it is, one after the other.
const RAW_TOKEN: &str = "$serde_json::private::RawValue";

/// From this length on, [`Py`] writes a string's text itself (see `serialize_str`); shorter
/// ones cost less through serde_json's table than through the raw text's calls. Measured
/// with callgrind (`bench/examples/calls.rs`): a 40-byte string costs about 300 instructions
/// more written itself, a 100-byte one about 300 fewer; they break even near 70.
const LONG_STRING: usize = 64;

/// The nonce after [`MARK`]: random, per process, never sent.
fn nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| format!("{:016x}", uuid::Uuid::new_v4().as_u64_pair().0))
}

/// A value that `serde_json::Value` cannot hold, as a marked string holds it.
#[derive(Debug, Clone, PartialEq)]
enum Special {
    /// `NaN`, `Infinity` or `-Infinity`.
    Float(f64),
    /// An integer beyond 64 bits: its decimal digits, with a leading `-` if negative.
    BigInt(String),
    /// A string holding lone surrogates: its UTF-16 code units.
    Surrogates(Vec<u16>),
}

impl Special {
    /// The marked string holding this value.
    fn marked(&self) -> String {
        let mut out = String::new();
        out.push(MARK);
        out.push_str(nonce());
        match self {
            Special::Float(f) if f.is_nan() => out.push_str("n:"),
            Special::Float(f) if *f > 0.0 => out.push_str("i:"),
            Special::Float(_) => out.push_str("j:"),
            Special::BigInt(digits) => {
                out.push_str("b:");
                out.push_str(digits);
            }
            Special::Surrogates(units) => {
                out.push_str("s:");
                for unit in units {
                    out.push_str(&format!("{unit:04x}"));
                }
            }
        }
        out
    }

    /// The value a marked string holds; `None` for any other string. One byte compare for
    /// strings that do not start with the noncharacter.
    fn from_marked(text: &str) -> Option<Special> {
        if text.as_bytes().first() != Some(&0xEF) {
            return None;
        }
        let rest = text.strip_prefix(MARK)?.strip_prefix(nonce())?;
        let (kind, value) = rest.split_at_checked(2)?;
        Some(match kind {
            "n:" => Special::Float(f64::NAN),
            "i:" => Special::Float(f64::INFINITY),
            "j:" => Special::Float(f64::NEG_INFINITY),
            "b:" => Special::BigInt(value.to_owned()),
            "s:" => Special::Surrogates(
                value
                    .as_bytes()
                    .chunks(4)
                    .map(|hex| u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
                    .collect::<Option<_>>()?,
            ),
            _ => return None,
        })
    }

    /// The JSON text Python writes for this value.
    fn python_json(&self) -> String {
        match self {
            Special::Float(f) if f.is_nan() => "NaN".to_owned(),
            Special::Float(f) if *f > 0.0 => "Infinity".to_owned(),
            Special::Float(_) => "-Infinity".to_owned(),
            Special::BigInt(digits) => digits.clone(),
            Special::Surrogates(units) => {
                let mut out = String::from("\"");
                for item in char::decode_utf16(units.iter().copied()) {
                    match item {
                        Ok(c) => {
                            let quoted = serde_json::to_string(&c).unwrap_or_default();
                            let escaped = quoted.get(1..quoted.len().saturating_sub(1));
                            out.push_str(escaped.unwrap_or_default());
                        }
                        Err(lone) => out.push_str(&format!("\\u{:04x}", lone.unpaired_surrogate())),
                    }
                }
                out.push('"');
                out
            }
        }
    }

    /// What it is, for error messages.
    fn describe(&self) -> String {
        match self {
            Special::Float(_) => self.python_json(),
            Special::BigInt(digits) => format!("the integer {digits}"),
            Special::Surrogates(_) => format!("the string {}", self.python_json()),
        }
    }
}

/// The JSON text Python wrote for the value `text` marks; `None` for any other text.
pub(crate) fn marked_json(text: &str) -> Option<String> {
    Special::from_marked(text).map(|special| special.python_json())
}

/// `text` as [`Value`] text would show it: a marked string as Python wrote its value.
pub(crate) fn display_string(text: &str) -> std::borrow::Cow<'_, str> {
    marked_json(text).map_or(text.into(), Into::into)
}

/// Rewrites JSON text as Python writes it into JSON text serde_json reads, the values it
/// cannot hold as marked strings: `NaN`, `Infinity` and `-Infinity` outside strings, strings
/// holding lone surrogate escapes, and integers beyond 64 bits. `None` when the text holds
/// none of them (or is not JSON in a way this cannot mend).
pub(crate) fn normalize(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut changed = false;
    let mut at = 0;
    // The open objects and arrays, and whether a key comes next: a value Python writes is
    // marked only where a value may stand, so that `{NaN: 1}` stays the error it is.
    let mut open: Vec<u8> = Vec::new();
    let mut key_next = false;
    while let Some(&byte) = text.get(at) {
        match byte {
            b'{' | b'[' => {
                open.push(byte);
                key_next = byte == b'{';
            }
            b'}' | b']' => drop(open.pop()),
            b',' => key_next = open.last() == Some(&b'{'),
            b':' => key_next = false,
            _ => {}
        }
        let special = match byte {
            // Not a value: copied as it is below.
            b'N' | b'I' | b'-' | b'0'..=b'9' if key_next => None,
            b'"' => {
                let end = string_end(text, at)?;
                let body = text.get(at + 1..end)?;
                match lone_surrogates(body) {
                    Some(units) => Some((Special::Surrogates(units), end + 1)),
                    None => {
                        out.extend_from_slice(text.get(at..=end)?);
                        at = end + 1;
                        continue;
                    }
                }
            }
            b'N' | b'I' | b'-' => [
                (&b"NaN"[..], f64::NAN),
                (b"Infinity", f64::INFINITY),
                (b"-Infinity", f64::NEG_INFINITY),
            ]
            .iter()
            .find(|(word, _)| text.get(at..).is_some_and(|rest| rest.starts_with(word)))
            .map(|(word, f)| (Special::Float(*f), at + word.len()))
            .or_else(|| big_integer(text, at)),
            b'0'..=b'9' => big_integer(text, at),
            _ => None,
        };
        match special {
            Some((special, next)) => {
                changed = true;
                // A marked string is plain text: a noncharacter, hex digits, letters, a colon.
                out.push(b'"');
                out.extend_from_slice(special.marked().as_bytes());
                out.push(b'"');
                at = next;
            }
            None => {
                // A number is copied whole, so that its digits are not taken for another.
                let end = match byte {
                    b'-' | b'0'..=b'9' => number_end(text, at),
                    _ => at + 1,
                };
                out.extend_from_slice(text.get(at..end)?);
                at = end;
            }
        }
    }
    changed.then_some(out)
}

/// The index of the quote that ends the string starting at `start` (a quote).
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match text.get(at)? {
            b'"' => return Some(at),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The index after the number (or `-`) starting at `start`.
fn number_end(text: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while text
        .get(at)
        .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        at += 1;
    }
    at
}

/// An integer literal at `start` that no 64-bit integer holds, and the index after it. None
/// with serde_json's `arbitrary_precision`, where a `Value` holds it as it is.
#[cfg(feature = "arbitrary-precision")]
fn big_integer(_: &[u8], _: usize) -> Option<(Special, usize)> {
    None
}

/// An integer literal at `start` that no 64-bit integer holds, and the index after it.
#[cfg(not(feature = "arbitrary-precision"))]
fn big_integer(text: &[u8], start: usize) -> Option<(Special, usize)> {
    let end = number_end(text, start);
    let literal = std::str::from_utf8(text.get(start..end)?).ok()?;
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    let integer = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    let fits = literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok();
    (integer && !fits).then(|| (Special::BigInt(literal.to_owned()), end))
}

/// The UTF-16 code units of a JSON string's contents (without quotes) if they hold a lone
/// surrogate escape, `None` otherwise (also when the string does not decode).
fn lone_surrogates(body: &[u8]) -> Option<Vec<u16>> {
    if !body
        .windows(3)
        .any(|w| w[0] == b'\\' && (w[1] == b'u' || w[1] == b'U') && matches!(w[2], b'd' | b'D'))
    {
        return None;
    }
    let mut units = Vec::with_capacity(body.len());
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'\\' => {
                let unit = match body.get(at + 1)? {
                    b'"' => u16::from(b'"'),
                    b'\\' => u16::from(b'\\'),
                    b'/' => u16::from(b'/'),
                    b'b' => 0x8,
                    b'f' => 0xc,
                    b'n' => u16::from(b'\n'),
                    b'r' => u16::from(b'\r'),
                    b't' => u16::from(b'\t'),
                    b'u' => {
                        let hex = std::str::from_utf8(body.get(at + 2..at + 6)?).ok()?;
                        let unit = u16::from_str_radix(hex, 16).ok()?;
                        at += 4;
                        unit
                    }
                    _ => return None,
                };
                units.push(unit);
                at += 2;
            }
            byte if byte < 0x20 => return None,
            _ => {
                // A run of plain text, as UTF-8.
                let end = body[at..]
                    .iter()
                    .position(|&b| b == b'\\')
                    .map_or(body.len(), |p| at + p);
                let text = std::str::from_utf8(&body[at..end]).ok()?;
                units.extend(text.encode_utf16());
                at = end;
            }
        }
    }
    let lone = char::decode_utf16(units.iter().copied()).any(|item| item.is_err());
    lone.then_some(units)
}

/// Whether a value decoded by serde_json may hide an integer beyond 64 bits, which serde_json
/// reads as the nearest float: an integral float of at least 2^63 in magnitude. (Python
/// writes its floats with a `.` or an exponent, which [`normalize`] leaves as floats.)
#[cfg(not(feature = "arbitrary-precision"))]
pub(crate) fn may_hide_big_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_f64()
                && n.as_f64()
                    .is_some_and(|f| f.abs() >= 9.223_372_036_854_776e18 && f.fract() == 0.0)
        }
        Value::Array(items) => items.iter().any(may_hide_big_integer),
        Value::Object(map) => map.values().any(may_hide_big_integer),
        _ => false,
    }
}

/// With serde_json's `arbitrary_precision`, a `Value` holds integers of any size itself.
#[cfg(feature = "arbitrary-precision")]
pub(crate) fn may_hide_big_integer(_: &Value) -> bool {
    false
}

/// A [`Value`] as a deserializer that gives back the values of marked strings: the
/// deserializer behind [`from_value`].
pub(crate) struct Restore(pub(crate) Value);

/// Decodes `T` from a value of a received message, as `serde_json::from_value` does, but
/// giving back the values Python writes that a `Value` cannot hold (see the crate's
/// "Python's JSON" notes): `NaN`, `Infinity` and `-Infinity` into `f64`/`f32`, integers beyond
/// 64 bits into `u128`/`i128` (and `f64`); decoding one of them into any other type fails
/// with an error whose text starts `ValueError: `.
///
/// Generated endpoints and clients decode this way; a hand-written
/// [`Endpoint`](crate::Endpoint) should too.
///
/// ```
/// let v: f64 = amqp_rpc::wire::from_value(serde_json::json!(1.5))?;
/// assert_eq!(v, 1.5);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn from_value<T: de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Restore(value))
}

/// The error for a value the target type cannot hold.
fn cannot_hold(special: &Special, what: &dyn fmt::Display) -> serde_json::Error {
    de::Error::custom(format_args!(
        "ValueError: {} cannot be held by {what}",
        special.describe()
    ))
}

/// Why a type's `expecting` text reads as it does, for [`cannot_hold`].
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

impl Restore {
    fn special(&self) -> Option<Special> {
        match &self.0 {
            Value::String(s) => Special::from_marked(s),
            _ => None,
        }
    }
}

macro_rules! forward_to_value {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            match self.special() {
                Some(special) => Err(cannot_hold(&special, &Expecting(&visitor))),
                None => self.0.$method(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Restore {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::String(s) => match Special::from_marked(&s) {
                // A big integer to any type (an untagged enum, a `Value` with serde_json's
                // `arbitrary_precision`) that takes a 128-bit one.
                Some(Special::BigInt(digits)) => match digits.parse::<u128>() {
                    Ok(u) => visitor.visit_u128(u),
                    Err(_) => match digits.parse::<i128>() {
                        Ok(i) => visitor.visit_i128(i),
                        Err(_) => Err(cannot_hold(&Special::BigInt(digits), &Expecting(&visitor))),
                    },
                },
                // Not `visit_f64`: a `Value` would take NaN as `null` without a word.
                Some(special) => Err(cannot_hold(&special, &Expecting(&visitor))),
                None => visitor.visit_string(s),
            },
            Value::Array(items) => {
                let len = items.len();
                let mut seq = RestoreSeq(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                match seq.0.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(len, &"fewer elements in array")),
                }
            }
            Value::Object(map) => {
                let len = map.len();
                let mut access = RestoreMap {
                    entries: map.into_iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut access)?;
                match access.entries.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(len, &"fewer elements in map")),
                }
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.special() {
            Some(Special::Float(f)) => visitor.visit_f64(f),
            Some(Special::BigInt(digits)) => match digits.parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(cannot_hold(&Special::BigInt(digits), &"a float")),
            },
            Some(special) => Err(cannot_hold(&special, &Expecting(&visitor))),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.special() {
            Some(Special::BigInt(digits)) => match digits.parse::<u128>() {
                Ok(u) => visitor.visit_u128(u),
                Err(_) => Err(cannot_hold(&Special::BigInt(digits), &"a u128")),
            },
            Some(special) => Err(cannot_hold(&special, &"a u128")),
            None => self.0.deserialize_u128(visitor),
        }
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.special() {
            Some(Special::BigInt(digits)) => match digits.parse::<i128>() {
                Ok(i) => visitor.visit_i128(i),
                Err(_) => Err(cannot_hold(&Special::BigInt(digits), &"an i128")),
            },
            Some(special) => Err(cannot_hold(&special, &"an i128")),
            None => self.0.deserialize_i128(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Object(map) if map.len() == 1 => {
                let mut entries = map.into_iter();
                match entries.next() {
                    Some((variant, value)) => visitor.visit_enum(RestoreEnum { variant, value }),
                    None => Err(de::Error::invalid_length(0, &"one variant")),
                }
            }
            other => match Special::from_marked(other.as_str().unwrap_or_default()) {
                Some(special) => Err(cannot_hold(&special, &Expecting(&visitor))),
                None => other.deserialize_enum(name, variants, visitor),
            },
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Array(_) => self.deserialize_any(visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Array(_) | Value::Object(_) => self.deserialize_any(visitor),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_unit()
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.special() {
            Some(special) => Err(cannot_hold(&special, &Expecting(&visitor))),
            None => self.0.deserialize_unit_struct(name, visitor),
        }
    }
}

struct RestoreSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for RestoreSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, serde_json::Error> {
        self.0
            .next()
            .map(|value| seed.deserialize(Restore(value)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct RestoreMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for RestoreMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, serde_json::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(KeyDeserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, serde_json::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Restore(value)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An object key: a string, which also decodes as a number or a boolean, as serde_json
/// decodes keys (`HashMap<u32, _>`).
struct KeyDeserializer(String);

macro_rules! parsed_key {
    ($($method:ident $visit:ident $ty:ty)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
            match self.0.parse::<$ty>() {
                Ok(value) => visitor.$visit(value),
                Err(_) => Err(de::Error::invalid_value(de::Unexpected::Str(&self.0), &visitor)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyDeserializer {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        visitor.visit_string(self.0)
    }

    parsed_key! {
        deserialize_bool visit_bool bool
        deserialize_i8 visit_i8 i8 deserialize_i16 visit_i16 i16
        deserialize_i32 visit_i32 i32 deserialize_i64 visit_i64 i64
        deserialize_i128 visit_i128 i128 deserialize_u8 visit_u8 u8
        deserialize_u16 visit_u16 u16 deserialize_u32 visit_u32 u32
        deserialize_u64 visit_u64 u64 deserialize_u128 visit_u128 u128
        deserialize_f32 visit_f32 f32 deserialize_f64 visit_f64 f64
    }

    fn deserialize_option<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        Value::String(self.0).deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct RestoreEnum {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for RestoreEnum {
    type Error = serde_json::Error;
    type Variant = Restore;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Restore), serde_json::Error> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, Restore(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for Restore {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), serde_json::Error> {
        match self.0 {
            Value::Null => Ok(()),
            other => Err(de::Error::invalid_type(
                de::Unexpected::Other(super::json_type(&other)),
                &"unit variant",
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, serde_json::Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

/// How [`Py`] writes a value Python has and JSON has not.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// As Python writes it, into JSON text (`NaN`, `"\ud800"`): for serde_json's text
    /// serializers only.
    Text,
    /// As a marked string, into a `Value` (`serde_json::to_value`).
    Marked,
}

/// `T` serialized with Python's values written as [`Mode`] says; everything else exactly as
/// `T` serializes itself.
pub(crate) struct Py<'a, T: ?Sized>(pub(crate) &'a T, pub(crate) Mode);

impl<T: Serialize + ?Sized> Serialize for Py<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(PySerializer(serializer, self.1))
    }
}

struct PySerializer<S>(S, Mode);

impl<S: Serializer> PySerializer<S> {
    fn special(self, special: &Special) -> Result<S::Ok, S::Error> {
        match self.1 {
            Mode::Text => self.raw(|raw| raw.serialize_field(RAW_TOKEN, &special.python_json())),
            Mode::Marked => self.0.serialize_str(&special.marked()),
        }
    }

    /// Writes the JSON text that `write` gives as raw fields of serde_json's raw value, as it
    /// is (serde_json's text serializers only: see [`RAW_TOKEN`]).
    fn raw(
        self,
        write: impl FnOnce(&mut S::SerializeStruct) -> Result<(), S::Error>,
    ) -> Result<S::Ok, S::Error> {
        let mut raw = self.0.serialize_struct(RAW_TOKEN, 1)?;
        write(&mut raw)?;
        raw.end()
    }
}

macro_rules! forward_scalars {
    ($($method:ident($ty:ty))*) => {$(
        fn $method(self, v: $ty) -> Result<S::Ok, S::Error> {
            self.0.$method(v)
        }
    )*};
}

impl<S: Serializer> Serializer for PySerializer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = PyCompound<S::SerializeSeq>;
    type SerializeTuple = PyCompound<S::SerializeTuple>;
    type SerializeTupleStruct = PyCompound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = PyCompound<S::SerializeTupleVariant>;
    type SerializeMap = PyCompound<S::SerializeMap>;
    type SerializeStruct = PyCompound<S::SerializeStruct>;
    type SerializeStructVariant = PyCompound<S::SerializeStructVariant>;

    forward_scalars! {
        serialize_bool(bool) serialize_i8(i8) serialize_i16(i16) serialize_i32(i32)
        serialize_i64(i64) serialize_u8(u8) serialize_u16(u16)
        serialize_u32(u32) serialize_u64(u64) serialize_char(char)
        serialize_bytes(&[u8])
    }

    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        match (u64::try_from(v), self.1) {
            (Err(_), Mode::Marked) => self.special(&Special::BigInt(v.to_string())),
            _ => self.0.serialize_u128(v),
        }
    }

    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        match (i64::try_from(v), self.1) {
            (Err(_), Mode::Marked) => self.special(&Special::BigInt(v.to_string())),
            _ => self.0.serialize_i128(v),
        }
    }

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => self.0.serialize_f32(v),
            false => self.special(&Special::Float(f64::from(v))),
        }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => self.0.serialize_f64(v),
            false => self.special(&Special::Float(v)),
        }
    }

    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        match (Special::from_marked(v), self.1) {
            (Some(special), Mode::Text) => self.special(&special),
            // serde_json looks up each byte of a string in a table (about 9 instructions a
            // byte); a long one is written as raw text instead, in pieces found by a scan that
            // checks many bytes at once (`escape::json_string_pieces`, the same bytes as
            // serde_json's). Inside the envelope the raw text is escaped once more by
            // `escape::InString`, with the same scan. Keys never come here (`PyCompound`).
            (None, Mode::Text) if v.len() >= LONG_STRING => self.raw(|raw| {
                super::escape::json_string_pieces(v, |piece| raw.serialize_field(RAW_TOKEN, piece))
            }),
            _ => self.0.serialize_str(v),
        }
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Py(value, self.1))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Py(value, self.1))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Py(value, self.1))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Ok(PyCompound(self.0.serialize_seq(len)?, self.1))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        Ok(PyCompound(self.0.serialize_tuple(len)?, self.1))
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Ok(PyCompound(
            self.0.serialize_tuple_struct(name, len)?,
            self.1,
        ))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let inner = self.0.serialize_tuple_variant(name, index, variant, len)?;
        Ok(PyCompound(inner, self.1))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Ok(PyCompound(self.0.serialize_map(len)?, self.1))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(PyCompound(self.0.serialize_struct(name, len)?, self.1))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let inner = self.0.serialize_struct_variant(name, index, variant, len)?;
        Ok(PyCompound(inner, self.1))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A compound serializer whose elements are written through [`Py`].
pub(crate) struct PyCompound<C>(C, Mode);

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<C: ser::$trait> ser::$trait for PyCompound<C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.0.$method(&Py(value, self.1))
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl<C: ser::SerializeMap> ser::SerializeMap for PyCompound<C> {
    type Ok = C::Ok;
    type Error = C::Error;

    // Keys as they are: a JSON key is a string, and a marked one stays marked.
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.0.serialize_key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        self.0.serialize_value(&Py(value, self.1))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.0.end()
    }
}

/// The compound serializers whose fields have names.
macro_rules! named_fields {
    ($trait:ident) => {
        impl<C: ser::$trait> ser::$trait for PyCompound<C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                self.0.serialize_field(key, &Py(value, self.1))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.0.end()
            }
        }
    };
}

named_fields!(SerializeStruct);
named_fields!(SerializeStructVariant);

/// Encodes `value` as a [`Value`], its non-finite floats as marked strings (where
/// `serde_json::to_value` gives `null`).
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(Py(value, Mode::Marked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    fn normalized(text: &str) -> Value {
        let bytes = normalize(text.as_bytes()).unwrap_or_else(|| panic!("unchanged: {text}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn text_of(value: &Value) -> String {
        serde_json::to_string(&Py(value, Mode::Text)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn python_non_finite_floats_become_f64_and_are_written_back_as_python_writes_them() {
        let value = normalized(r#"{"a": NaN, "b": [Infinity, -Infinity, 1.5], "c": "NaN"}"#);
        let a: f64 = from_value(value["a"].clone()).unwrap_or_default();
        assert!(a.is_nan());
        let b: Vec<f64> = from_value(value["b"].clone()).unwrap_or_default();
        assert_eq!(b, [f64::INFINITY, f64::NEG_INFINITY, 1.5]);
        let c: String = from_value(value["c"].clone()).unwrap_or_default();
        assert_eq!(c, "NaN");
        assert_eq!(
            text_of(&value),
            r#"{"a":NaN,"b":[Infinity,-Infinity,1.5],"c":"NaN"}"#
        );
    }

    // Without `arbitrary-precision`: big integers are marked (with it, a `Value` holds them).
    #[cfg(not(feature = "arbitrary-precision"))]
    #[test]
    fn types_that_cannot_hold_a_python_value_fail_with_a_value_error() {
        let value = normalized(r#"{"f": NaN, "s": "a\ud800b", "i": 18446744073709551616}"#);
        let errors = [
            from_value::<i64>(value["f"].clone()).err(),
            from_value::<Value>(value["f"].clone()).err(),
            from_value::<String>(value["s"].clone()).err(),
            from_value::<Value>(value["s"].clone()).err(),
            from_value::<u64>(value["i"].clone()).err(),
            from_value::<HashMapOfValues>(value.clone()).err(),
        ];
        for error in errors {
            let text = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.starts_with("ValueError: "), "{text}");
        }
        let text = from_value::<String>(value["s"].clone())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            text.as_deref(),
            Some(r#"ValueError: the string "a\ud800b" cannot be held by a string"#)
        );
    }

    type HashMapOfValues = std::collections::HashMap<String, Value>;

    // Without `arbitrary-precision`: big integers are marked (with it, a `Value` holds them).
    #[cfg(not(feature = "arbitrary-precision"))]
    #[test]
    fn big_integers_fit_128_bit_integers_and_floats_and_are_written_back_exactly() {
        let value = normalized(
            r#"[18446744073709551616, -9223372036854775809, 123456789012345678901234567890123456789012, 5]"#,
        );
        assert_eq!(
            from_value::<u128>(value[0].clone()).ok(),
            Some(18_446_744_073_709_551_616)
        );
        assert_eq!(
            from_value::<i128>(value[1].clone()).ok(),
            Some(-9_223_372_036_854_775_809)
        );
        assert_eq!(
            from_value::<f64>(value[0].clone()).ok(),
            Some(18_446_744_073_709_551_616.0)
        );
        assert!(from_value::<u128>(value[2].clone()).is_err());
        assert_eq!(value[3], json!(5));
        assert_eq!(
            text_of(&value),
            "[18446744073709551616,-9223372036854775809,123456789012345678901234567890123456789012,5]"
        );
    }

    #[test]
    fn lone_surrogates_are_kept_and_written_back_as_escapes() {
        let value = normalized(r#"["\ud800", "ok \ud83d\ude00", "x\udc00\"y\\", "\\ud800"]"#);
        assert_eq!(value[1], "ok 😀");
        assert_eq!(value[3], "\\ud800");
        assert_eq!(
            text_of(&value),
            r#"["\ud800","ok 😀","x\udc00\"y\\","\\ud800"]"#
        );
    }

    #[test]
    fn python_values_where_a_key_stands_are_left_for_serde_json_to_refuse() {
        for text in [
            r#"{NaN: 1}"#,
            r#"{"a": 1, Infinity: 2}"#,
            r#"{"a": [{"b": 1}], 18446744073709551616: "x"}"#,
            r#"{"a": 5e-324,1111111111111111111111111111: "x"}"#,
        ] {
            let normalized = normalize(text.as_bytes()).unwrap_or_else(|| text.as_bytes().to_vec());
            assert!(
                serde_json::from_slice::<Value>(&normalized).is_err(),
                "{text} became {}",
                String::from_utf8_lossy(&normalized)
            );
        }
        // Values in arrays inside objects are still values.
        let value = normalized(r#"{"a": [NaN, {"b": Infinity}], "c": NaN}"#);
        assert_eq!(text_of(&value), r#"{"a":[NaN,{"b":Infinity}],"c":NaN}"#);
    }

    #[test]
    fn text_without_python_values_is_left_alone() {
        for text in [
            r#"{"a": 1, "b": [1.5e300, -0, 9223372036854775807, -9223372036854775808]}"#,
            r#"{"s": "NaN Infinity -Infinity \ud83d\ude00 \\ud800"}"#,
            r#"18446744073709551615"#,
        ] {
            assert_eq!(normalize(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn strings_that_look_marked_but_lack_the_nonce_are_plain_strings() {
        let forged = format!("{MARK}0000000000000000n:");
        assert_eq!(
            from_value::<String>(Value::String(forged.clone())).ok(),
            Some(forged)
        );
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    enum Shape {
        Unit,
        Circle(f64),
        Rect { w: f64, h: f64 },
        Pair(f64, Option<f64>),
    }

    #[test]
    fn nested_types_enums_and_options_restore_python_values() {
        let value = normalized(
            r#"[{"Circle": NaN}, {"Rect": {"w": Infinity, "h": 1}}, "Unit", {"Pair": [-Infinity, null]}]"#,
        );
        let shapes: Vec<Shape> = from_value(value).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(shapes[0], Shape::Circle(f) if f.is_nan()));
        assert_eq!(
            shapes[1..],
            [
                Shape::Rect {
                    w: f64::INFINITY,
                    h: 1.0
                },
                Shape::Unit,
                Shape::Pair(f64::NEG_INFINITY, None)
            ]
        );
        // And back out, through a Value, as Python writes them.
        let value = to_value(&shapes).unwrap_or_default();
        assert_eq!(
            text_of(&value),
            r#"[{"Circle":NaN},{"Rect":{"h":1.0,"w":Infinity}},"Unit",{"Pair":[-Infinity,null]}]"#
        );
    }

    #[test]
    fn restore_decodes_plain_values_as_serde_json_does() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct S {
            a: u8,
            b: Vec<String>,
            c: Option<bool>,
            d: (i32, char),
            e: std::collections::BTreeMap<u32, ()>,
        }
        let value = json!({"a": 7, "b": ["x"], "c": null, "d": [-1, "z"], "e": {"5": null}});
        let ours: Result<S, _> = from_value(value.clone());
        let theirs: Result<S, _> = serde_json::from_value(value);
        assert_eq!(
            ours.map_err(|e| e.to_string()),
            theirs.map_err(|e| e.to_string())
        );
        for (value, _what) in [
            (json!([1, 2, 3]), "too long"),
            (json!({"a": 1}), "missing fields"),
            (json!("s"), "wrong type"),
        ] {
            let ours = from_value::<(u8, u8)>(value.clone()).map_err(|e| e.to_string());
            let theirs = serde_json::from_value::<(u8, u8)>(value).map_err(|e| e.to_string());
            assert_eq!(ours, theirs);
        }
    }

    /// With the `arbitrary-precision` feature a `Value` holds any integer itself.
    #[cfg(feature = "arbitrary-precision")]
    #[test]
    fn with_arbitrary_precision_big_integers_round_trip_through_a_value() {
        let body = br#"{"method": "m", "args": {"n": 123456789012345678901234567890, "m": [-18446744073709551617]}}"#;
        let request = crate::wire::IncomingRequest::decode(body).unwrap_or_else(|e| panic!("{e}"));
        let value: Value = from_value(request.args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            text_of(&value),
            r#"{"m":[-18446744073709551617],"n":123456789012345678901234567890}"#
        );
        let n: u128 = from_value(value["n"].clone()).unwrap_or_default();
        assert_eq!(n, 123_456_789_012_345_678_901_234_567_890);
    }

    #[test]
    fn rust_non_finite_floats_are_written_as_python_writes_them() {
        let text = serde_json::to_string(&Py(
            &(f64::NAN, f32::INFINITY, -f64::INFINITY, 0.5),
            Mode::Text,
        ))
        .unwrap_or_default();
        assert_eq!(text, "[NaN,Infinity,-Infinity,0.5]");
    }
}
