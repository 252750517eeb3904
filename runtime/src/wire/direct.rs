//! Reading an envelope's message straight from its escaped text, in one pass.
//!
//! The general path unescapes `oslo.message` into a new string, then serde_json parses that
//! string, scanning and copying each of its strings again. For a long string (a 64 KiB
//! argument or result) those are two scans and two copies of it, and serde_json's scan is the
//! slower one. Here the message is parsed where it lies in the body: each inner string is
//! unescaped from the envelope's text into its final `String`, with one scan
//! ([`next_needing_escape`]) and one copy.
//!
//! This reader takes only what it is sure of: a usual envelope ([`USUAL_PREFIXES`]) holding an
//! object of plain JSON. It gives up (`None`) on anything else, and the general path then
//! reads the body as before: bad JSON, escapes that do not pair (lone surrogates), `NaN` and
//! Python's other extensions, nesting deeper than [`MAX_DEPTH`], anything after the envelope.
//! It also gives up on a message with more values than its length pays for
//! ([`BYTES_PER_VALUE`]). Numbers are read by serde_json itself, from their text (a plain
//! integer is read here, as serde_json reads it), so they are the same numbers
//! (`float_roundtrip` and `arbitrary_precision` included). Where it does not give up, it gives
//! the members serde_json reads from the unescaped message, in their order; property tests
//! check that on any message, and on broken ones.

use serde_json::{Map, Value};

use super::envelope::USUAL_PREFIXES;
use super::envelope::ends_usual;
use super::escape::{next_needing_escape, short_escape, surrogate_pair, unescape_one};

/// Deeper nesting is left to the general path (serde_json refuses 128 levels).
const MAX_DEPTH: usize = 100;

/// The reader pays off in long strings, and costs more than serde_json per value (a value it
/// reads is then rebuilt by the decoded type): it reads at most one value per this many bytes
/// of body (and [`VALUES_ANYWAY`] more), and gives up on denser messages. Read here whole, a
/// message of 1,000 integers (9 KB) took 1.6 times the general path's instructions; given up
/// after the values its length allows, it takes 1.1 times (1,000 floats: 1.13 times). A
/// 64 KiB string takes a third fewer (callgrind; `bench/PROFILING.md`).
const BYTES_PER_VALUE: usize = 256;
/// Values read whatever the body's length.
const VALUES_ANYWAY: usize = 16;

/// The members of a usual envelope's message, parsed from the body's text, in their order
/// (a repeated key is there each time); `None` where the general path must read it. Objects
/// inside are `Map`s, as serde_json reads them (a repeated key keeps its last value).
pub(super) fn open(body: &[u8]) -> Option<Vec<(String, Value)>> {
    // As the general path: a body that is not UTF-8 is refused, whatever part of it is not.
    let text = std::str::from_utf8(body).ok()?;
    let rest = USUAL_PREFIXES.iter().find_map(|p| body.strip_prefix(*p))?;
    let mut reader = Reader {
        text,
        at: body.len() - rest.len(),
        values_left: body.len() / BYTES_PER_VALUE + VALUES_ANYWAY,
    };
    reader.skip_whitespace()?;
    if reader.next()? != Next::Char('{') {
        return None;
    }
    let mut message = Vec::new();
    reader.members(1, |key, value| message.push((key, value)))?;
    reader.skip_whitespace()?;
    // The message's end is the end of `oslo.message`'s string.
    let after = text.as_bytes().get(reader.at..)?.strip_prefix(b"\"")?;
    ends_usual(after).then_some(message)
}

/// Whether `c` can be part of a JSON number.
fn is_number_char(c: char) -> bool {
    matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E')
}

/// What the message's text holds next: a character of the message (unescaped once, from the
/// envelope's string), or the end of the envelope's string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Char(char),
    End,
}

/// The message's text, `at` a byte offset in the body inside `oslo.message`'s string.
struct Reader<'a> {
    text: &'a str,
    at: usize,
    /// How many more values it reads before it gives up.
    values_left: usize,
}

impl Reader<'_> {
    /// The next character of the message, unescaped from the envelope; `None` where the
    /// envelope's string is not valid (a control character, a bad escape).
    fn next(&mut self) -> Option<Next> {
        let bytes = self.text.as_bytes();
        match *bytes.get(self.at)? {
            b'"' => Some(Next::End),
            b'\\' => {
                let (unescaped, length) = unescape_one(bytes.get(self.at + 1..)?)?;
                self.at += 1 + length;
                Some(Next::Char(unescaped))
            }
            0..0x20 => None,
            byte @ 0x20..0x80 => {
                self.at += 1;
                Some(Next::Char(char::from(byte)))
            }
            _ => {
                let c = self.text.get(self.at..)?.chars().next()?;
                self.at += c.len_utf8();
                Some(Next::Char(c))
            }
        }
    }

    /// The next character of the message; `None` at the envelope string's end too.
    fn next_char(&mut self) -> Option<char> {
        match self.next()? {
            Next::Char(c) => Some(c),
            Next::End => None,
        }
    }

    /// The next character without taking it.
    fn peek(&mut self) -> Option<Next> {
        let at = self.at;
        let next = self.next();
        self.at = at;
        next
    }

    /// Skips the message's JSON whitespace.
    fn skip_whitespace(&mut self) -> Option<()> {
        loop {
            // Spaces are the usual whitespace (Python's `", "` and `": "`), and need no unescaping.
            while self.text.as_bytes().get(self.at) == Some(&b' ') {
                self.at += 1;
            }
            match self.peek()? {
                Next::Char(' ' | '\t' | '\n' | '\r') => {
                    self.next()?;
                }
                _ => return Some(()),
            }
        }
    }

    /// Whitespace, then the character `expected`.
    fn expect(&mut self, expected: char) -> Option<()> {
        self.skip_whitespace()?;
        (self.next()? == Next::Char(expected)).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.values_left = self.values_left.checked_sub(1)?;
        self.skip_whitespace()?;
        let start = self.at;
        Some(match self.next_char()? {
            '{' => Value::Object(self.object(depth + 1)?),
            '[' => Value::Array(self.array(depth + 1)?),
            '"' => Value::String(self.string()?),
            't' => self.literal("rue", Value::Bool(true))?,
            'f' => self.literal("alse", Value::Bool(false))?,
            'n' => self.literal("ull", Value::Null)?,
            '-' | '0'..='9' => {
                self.at = start;
                self.number()?
            }
            _ => return None,
        })
    }

    /// An object, after its `{`.
    fn object(&mut self, depth: usize) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        self.members(depth, |key, value| drop(map.insert(key, value)))?;
        Some(map)
    }

    /// An object's members, after its `{`, each handed to `member` in turn.
    fn members(&mut self, depth: usize, mut member: impl FnMut(String, Value)) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_whitespace()?;
        if self.peek()? == Next::Char('}') {
            self.next()?;
            return Some(());
        }
        loop {
            self.expect('"')?;
            let key = self.string()?;
            self.expect(':')?;
            let value = self.value(depth)?;
            member(key, value);
            self.skip_whitespace()?;
            match self.next_char()? {
                ',' => {}
                '}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array's items, after its `[`.
    fn array(&mut self, depth: usize) -> Option<Vec<Value>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut items = Vec::new();
        self.skip_whitespace()?;
        if self.peek()? == Next::Char(']') {
            self.next()?;
            return Some(items);
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace()?;
            match self.next_char()? {
                ',' => {}
                ']' => return Some(items),
                _ => return None,
            }
        }
    }

    /// The rest of `true`, `false` or `null`.
    fn literal(&mut self, rest: &str, value: Value) -> Option<Value> {
        for expected in rest.chars() {
            if self.next_char()? != expected {
                return None;
            }
        }
        Some(value)
    }

    /// A number: the characters a JSON number can hold, read by serde_json from their text. A
    /// plain integer below 10^19 is read here, as serde_json would read it (a `u64`).
    fn number(&mut self) -> Option<Value> {
        let bytes = self.text.as_bytes();
        let rest = bytes.get(self.at..)?;
        let length = rest
            .iter()
            .position(|&b| !is_number_char(char::from(b)))
            .unwrap_or(rest.len());
        // A digit escaped in the envelope's string (`\u0031`) is read a character at a time.
        if rest.get(length) == Some(&b'\\') {
            return self.escaped_number();
        }
        let text = self.text.get(self.at..self.at + length)?;
        self.at += length;
        let plain = (1..=19).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if plain {
            return text.parse::<u64>().ok().map(Value::from);
        }
        Self::parsed_number(text)
    }

    /// [`Reader::number`], unescaping each character.
    fn escaped_number(&mut self) -> Option<Value> {
        let mut text = String::new();
        while let Some(Next::Char(c)) = self.peek()
            && is_number_char(c)
        {
            self.next()?;
            text.push(c);
        }
        Self::parsed_number(&text)
    }

    /// The number serde_json reads from `text`, which must be all of it.
    fn parsed_number(text: &str) -> Option<Value> {
        match serde_json::from_str(text).ok()? {
            number @ Value::Number(_) => Some(number),
            _ => None,
        }
    }

    /// A string's contents, after its opening quote, unescaped twice: from the envelope's
    /// string, then from the message's. Runs that need neither are copied as they are.
    fn string(&mut self) -> Option<String> {
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        loop {
            // The run up to the envelope's next escape, quote or control character is the
            // message's text as it is, and holds none of the message's own escapes or quotes
            // (those are escaped in the envelope).
            let end = next_needing_escape(bytes, self.at);
            out.push_str(self.text.get(self.at..end)?);
            self.at = end;
            match self.next_char()? {
                '"' => return Some(out),
                '\\' => out.push(self.escape()?),
                // A control character must be escaped in the message's JSON too.
                '\0'..='\u{1f}' => return None,
                c => out.push(c),
            }
        }
    }

    /// The character of a message escape, after its backslash (as [`unescape_one`] reads an
    /// envelope's, a character at a time). A surrogate must pair.
    fn escape(&mut self) -> Option<char> {
        let letter = u8::try_from(self.next_char()?).ok()?;
        if let Some(unescaped) = short_escape(letter) {
            return Some(unescaped);
        }
        if letter != b'u' {
            return None;
        }
        match self.hex4()? {
            high @ 0xD800..=0xDBFF => {
                if self.next_char()? != '\\' || self.next_char()? != 'u' {
                    return None;
                }
                surrogate_pair(high, self.hex4()?)
            }
            code => char::from_u32(code),
        }
    }

    /// Four hex digits' value.
    fn hex4(&mut self) -> Option<u32> {
        (0..4).try_fold(0, |value, _| {
            Some(value << 4 | self.next_char()?.to_digit(16)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::seal;
    use serde_json::json;

    /// What the general path gives for the same body.
    fn general(body: &[u8]) -> Option<Map<String, Value>> {
        let inner = super::super::envelope::open_usual(body)?;
        serde_json::from_str(&inner).ok()
    }

    /// The members read directly, as serde_json's `Map` holds them.
    fn open(body: &[u8]) -> Option<Map<String, Value>> {
        super::open(body).map(|members| members.into_iter().collect())
    }

    #[test]
    fn the_message_s_members_come_in_order_repeated_keys_too() {
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"b\": 1, \"a\": {\"y\": 1, \"y\": 2}, \"b\": 3}"}"#;
        let members = super::open(body).unwrap_or_default();
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(members[1].1, json!({"y": 2}));
    }

    #[test]
    fn reads_what_serde_json_reads_from_the_unescaped_message() {
        let long = "x".repeat(5000);
        let messages = [
            json!({}),
            json!({"method": "echo", "args": {"payload": long}, "version": "1.0"}),
            json!({"a": [1, -2, 3.5, 1e300, 18446744073709551615u64, -9223372036854775808i64]}),
            json!({"quote\"and\\slash/": "tab\t nl\n cr\r nul\u{0} é 𝄞 \u{7f}"}),
            json!({"nested": [[[{"x": [null, true, false, "", {}]}]]]}),
        ];
        for message in messages {
            let body = seal(&message.to_string());
            assert_eq!(open(&body), general(&body), "{message}");
            assert_eq!(open(&body).map(Value::Object), Some(message));
        }
    }

    #[test]
    fn reads_pythons_layout_and_its_escapes() {
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"s\": \"\\u00e9\\ud834\\udd1e\\\"\", \"n\": 1.50, \"k\": \u00e9}"}  "#;
        // `\u00e9` outside a string is not JSON: the general path refuses it too.
        assert_eq!(open(body), None);
        assert_eq!(general(body), None);
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"s\": \"\\u00e9\\ud834\\udd1e\\\"\", \"n\": 1.50, \"e\u00e9\": [ ]}"}  "#;
        let opened = open(body).unwrap_or_default();
        assert_eq!(Some(&opened), general(body).as_ref());
        // (`n` is 1.5, or "1.50" under serde_json's `arbitrary_precision`.)
        assert_eq!((&opened["s"], &opened["eé"]), (&json!("é𝄞\""), &json!([])));
    }

    #[test]
    fn gives_up_where_the_general_path_must_decide() {
        let bodies: [&[u8]; 12] = [
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": NaN}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": \"\\ud800\"}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": \"\ud800\"}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": 1,}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": 01}"}"#,
            // A newline in the envelope's string is one in the message's string: not JSON.
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": \"a\nb\"}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "[1]"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{} {}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": \"open}"}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{}", "extra": 1}"#,
            br#"{"oslo.version": "2.0", "oslo.message": "{}"} x"#,
            b"{\"oslo.version\": \"2.0\", \"oslo.message\": \"{\\\"x\\\": \\\"\xff\\\"}\"}",
        ];
        for body in bodies {
            assert_eq!(open(body), None, "{}", String::from_utf8_lossy(body));
        }
        // A number serde_json refuses (or keeps as text, under `arbitrary_precision`) is read as
        // the general path reads it.
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": 1e999}"}"#;
        assert_eq!(open(body), general(body));
        // Escaped in the message, it is JSON: a newline, then a backslash and an `n`.
        let body =
            br#"{"oslo.version": "2.0", "oslo.message": "{\"x\": \"a\\nb\", \"y\": \"a\\\\nb\"}"}"#;
        assert_eq!(open(body), general(body));
        assert_eq!(
            open(body).map(Value::Object),
            Some(json!({"x": "a\nb", "y": "a\\nb"}))
        );
    }

    #[test]
    fn a_message_dense_with_values_is_left_to_the_general_path() {
        let numbers = |count: usize| {
            let items: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            seal(&format!("{{\"n\": [{}]}}", items.join(",")))
        };
        let sparse = seal(&format!(
            "{{\"n\": [1, 2, 3], \"s\": \"{}\"}}",
            "s".repeat(5000)
        ));
        assert!(open(&sparse).is_some());
        // 2,000 numbers in 9 KB: more values than the bytes pay for.
        let dense = numbers(2000);
        assert!(dense.len() < 2000 * BYTES_PER_VALUE);
        assert_eq!(open(&dense), None);
        assert!(general(&dense).is_some());
    }

    #[test]
    fn nesting_beyond_the_limit_is_left_to_serde_json() {
        // Long enough for the reader to read that many values.
        let pad = "p".repeat(BYTES_PER_VALUE * MAX_DEPTH);
        let nested = |depth: usize| {
            let (open, close) = ("[".repeat(depth), "]".repeat(depth));
            format!("{{\"pad\": \"{pad}\", \"x\": {open}{close}}}")
        };
        let body = seal(&nested(MAX_DEPTH - 1));
        assert!(open(&body).is_some());
        assert_eq!(open(&body), general(&body));
        assert_eq!(open(&seal(&nested(MAX_DEPTH))), None);
    }
}
