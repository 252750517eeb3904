//! JSON string escaping, the heart of the envelope's cost: a writer that escapes what it is
//! given as the contents of a JSON string (with a formatter that makes serde_json write
//! escaped JSON in one pass), and unescaping with a word-at-a-time scan for the bytes that
//! need it.

use std::io;

use serde::Serialize;
use serde_json::ser::CharEscape;
use serde_json::value::RawValue;

/// A writer that appends what it is given as the contents of a JSON string: `"` and `\`
/// escaped, control characters as `\u00XX` (compact JSON from serde_json has none, but any
/// text written stays valid).
pub(crate) struct Escaped<'a> {
    out: &'a mut Vec<u8>,
    /// Where the escaped text starts in `out`.
    start: usize,
}

impl<'a> Escaped<'a> {
    /// Appends to `out`, after what it holds.
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Escaped<'a> {
        let start = out.len();
        Escaped { out, start }
    }

    /// Serializes `value` as compact JSON, escaped: the same bytes as writing
    /// `serde_json::to_vec(value)` to this writer, made in one pass.
    pub(crate) fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) -> serde_json::Result<()> {
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut *self.out,
            InString,
        ))
    }

    /// The bytes written so far, escaped.
    pub(crate) fn written(&self) -> &[u8] {
        self.out.get(self.start..).unwrap_or_default()
    }

    /// Forgets what was written after `len` bytes of [`Escaped::written`].
    pub(crate) fn truncate(&mut self, len: usize) {
        self.out.truncate(self.start + len);
    }
}

/// Which bytes need escaping inside a JSON string: `"`, `\` and control characters.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl io::Write for Escaped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        loop {
            let at = next_needing_escape(rest, 0);
            let (plain, special) = rest.split_at_checked(at).unwrap_or((rest, &[]));
            self.out.extend_from_slice(plain);
            let Some((&byte, after)) = special.split_first() else {
                break;
            };
            match byte {
                b'"' => self.out.extend_from_slice(br#"\""#),
                b'\\' => self.out.extend_from_slice(br"\\"),
                byte => self.out.extend_from_slice(&control_escape(byte)),
            }
            rest = after;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The JSON escape of a control character: `\u00XX`.
fn control_escape(byte: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |nibble: u8| HEX[usize::from(nibble & 0xf)];
    [b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte)]
}

/// A compact JSON formatter whose output is already escaped as the contents of a JSON string.
///
/// Only strings need it: compact JSON's punctuation, numbers and literals hold no `"`, `\` or
/// control character. serde_json hands a string's text to the formatter in fragments free of
/// those, and each of them as a separate escape: the fragments are written as they are, the
/// quotes as `\"`, and each escape with its backslash doubled.
struct InString;

impl serde_json::ser::Formatter for InString {
    fn begin_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(br#"\""#)
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(br#"\""#)
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let escaped: &[u8] = match char_escape {
            CharEscape::Quote => br#"\\\""#,
            CharEscape::ReverseSolidus => br"\\\\",
            CharEscape::Solidus => br"\\/",
            CharEscape::Backspace => br"\\b",
            CharEscape::FormFeed => br"\\f",
            CharEscape::LineFeed => br"\\n",
            CharEscape::CarriageReturn => br"\\r",
            CharEscape::Tab => br"\\t",
            CharEscape::AsciiControl(byte) => {
                writer.write_all(b"\\")?;
                return writer.write_all(&control_escape(byte));
            }
        };
        writer.write_all(escaped)
    }

    fn write_raw_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Raw JSON text (a `RawValue`) may hold anything: escape it byte by byte.
        let mut escaped = Vec::with_capacity(fragment.len() + 16);
        io::Write::write_all(&mut Escaped::new(&mut escaped), fragment.as_bytes())?;
        writer.write_all(&escaped)
    }
}

/// The text of a JSON string value, borrowed unless it has escapes; `None` for any other
/// JSON value (or a string that does not unescape).
pub(crate) fn json_str(raw: &RawValue) -> Option<std::borrow::Cow<'_, str>> {
    let text = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    match text.contains('\\') {
        false => Some(text.into()),
        true => unescape(text).map(Into::into),
    }
}

/// Unescapes the contents of a JSON string (without its quotes); `None` if it does not
/// unescape. The text was already checked as JSON, but every escape is checked again.
pub(crate) fn unescape(escaped: &str) -> Option<String> {
    match unescape_prefix(escaped.as_bytes())? {
        (text, None) => Some(text),
        (_, Some(_)) => None,
    }
}

/// Unescapes JSON string contents from the start of `bytes` up to the first unescaped `"`, or
/// to the end if there is none: the text, and what follows the quote. `None` where
/// serde_json would refuse the string: a bad escape (a lone surrogate included), a control
/// character, or text that is not UTF-8.
pub(crate) fn unescape_prefix(bytes: &[u8]) -> Option<(String, Option<&[u8]>)> {
    let mut out = Vec::with_capacity(bytes.len());
    // `copied` is where the bytes not yet copied start.
    let (mut copied, mut at) = (0, 0);
    loop {
        at = next_needing_escape(bytes, at);
        out.extend_from_slice(bytes.get(copied..at)?);
        let rest = match bytes.get(at) {
            None => None,
            Some(b'"') => Some(bytes.get(at + 1..)?),
            Some(b'\\') => {
                let (unescaped, length) = unescape_one(bytes.get(at + 1..)?)?;
                out.extend_from_slice(unescaped.encode_utf8(&mut [0; 4]).as_bytes());
                at += 1 + length;
                copied = at;
                continue;
            }
            // A control character.
            Some(_) => return None,
        };
        return Some((String::from_utf8(out).ok()?, rest));
    }
}

/// The index of the first byte from `at` on that needs escaping ([`NEEDS_ESCAPE`]), or
/// `bytes.len()`.
///
/// Eight bytes at a time: for each byte, `byte - n` borrows into its top bit where `byte < n`
/// (the classic "has a byte less than n" word test), and `"` and `\` are found as zero bytes
/// of the word XORed with them. A borrow can flag bytes above a true match, never below one, so
/// the lowest flagged byte is the first match.
pub(crate) fn next_needing_escape(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const TOPS: u64 = ONES << 7;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    while let Some(&chunk) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(chunk);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (below(word, 0x20) | below(quote, 1) | below(backslash, 1)) & TOPS;
        if found != 0 {
            // Little-endian: the lowest bit is the first byte.
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes
        .get(at)
        .is_some_and(|&b| !NEEDS_ESCAPE[usize::from(b)])
    {
        at += 1;
    }
    at
}

/// The character of the escape that `after` follows the backslash of, and the escape's length
/// after the backslash.
fn unescape_one(after: &[u8]) -> Option<(char, usize)> {
    Some(match after.first()? {
        b'"' => ('"', 1),
        b'\\' => ('\\', 1),
        b'/' => ('/', 1),
        b'b' => ('\u{8}', 1),
        b'f' => ('\u{c}', 1),
        b'n' => ('\n', 1),
        b'r' => ('\r', 1),
        b't' => ('\t', 1),
        b'u' => {
            let code = hex4(after.get(1..)?)?;
            match code {
                0xD800..=0xDBFF => {
                    // A high surrogate must be followed by an escaped low surrogate.
                    let low = after
                        .get(5..)
                        .and_then(|rest| rest.strip_prefix(b"\\u"))
                        .and_then(hex4)
                        .filter(|low| (0xDC00..=0xDFFF).contains(low))?;
                    let pair = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    (char::from_u32(pair)?, 11)
                }
                code => (char::from_u32(code)?, 5),
            }
        }
        _ => return None,
    })
}

/// The value of four hex digits at the start of `text`.
fn hex4(text: &[u8]) -> Option<u32> {
    let digits = text.get(..4)?;
    digits.iter().try_fold(0, |value, &digit| {
        Some(value << 4 | char::from(digit).to_digit(16)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_scan_finds_the_first_byte_needing_escape_as_a_byte_scan_does() {
        let byte_scan = |bytes: &[u8], at: usize| {
            (at..bytes.len())
                .find(|&i| NEEDS_ESCAPE[usize::from(bytes[i])])
                .unwrap_or(bytes.len())
        };
        // Every byte value at every place of a 19-byte run (two words and a tail), alone and
        // after another special byte, on a background of plain bytes of every kind.
        for background in [b'x', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
            for special in 0..=255u8 {
                for place in 0..19 {
                    for earlier in [None, Some((b'"', 3)), Some((0x1f, 11))] {
                        let mut bytes = vec![background; 19];
                        bytes[place] = special;
                        if let Some((byte, at)) = earlier {
                            bytes[at] = byte;
                        }
                        for from in [0, 1, 5, 8, 12, 19] {
                            assert_eq!(
                                next_needing_escape(&bytes, from),
                                byte_scan(&bytes, from),
                                "{bytes:?} from {from}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unescape_matches_serde_json() {
        let cases = [
            r#"plain"#,
            r#"a\"b\\c\/d\b\f\n\r\t"#,
            r#"\u00fc\u0000\u001f"#,
            r#"\ud83d\ude00 and \uD83D\uDE00"#,
            r#"{\"method\": \"m\", \"args\": {\"s\": \"\\u00fc \\\" \\\\\"}}"#,
        ];
        for case in cases {
            let expected: String = serde_json::from_str(&format!("\"{case}\"")).unwrap_or_default();
            assert_eq!(unescape(case), Some(expected), "{case}");
        }
        for bad in [r"\", r"\x", r"\u12", r"\ud800", r"\ud800\u0041", r"\udc00x"] {
            assert!(unescape(bad).is_none(), "{bad} accepted");
        }
    }
}
