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
            Roomy(&mut *self.out),
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

/// A body being written. A long write that does not fit reserves room for the message's end
/// as well: else the few bytes written after a long string (the rest of the message, the
/// envelope's end) outgrow the buffer at once, and doubling it copies the whole body again.
/// (callgrind saw that copy, in glibc's `realloc`, on both bodies of a 64 KiB call.)
struct Roomy<'a>(&'a mut Vec<u8>);

/// A write at least this long reserves [`ROOM`] bytes more.
const LONG_WRITE: usize = 4096;
/// Room for what follows a long write: the rest of a request (its ids, reply queue and
/// context) or a reply, escaped, and the envelope's end.
const ROOM: usize = 1024;

impl io::Write for Roomy<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() >= LONG_WRITE {
            self.0.reserve(buf.len() + ROOM);
        }
        self.0.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes [`next_needing_escape`] checks at once in a long run.
const BLOCK: usize = 64;
/// The bytes [`next_needing_escape`] checks a word at a time before it checks blocks.
const NEAR: usize = 16;

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
        write_escaped(self.out, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `bytes` as the contents of a JSON string: `"` and `\` escaped, control characters
/// as `\u00XX`, every other byte as it is.
#[inline]
fn write_escaped<W: ?Sized + io::Write>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    let mut rest = bytes;
    loop {
        let at = next_needing_escape(rest, 0);
        let (plain, special) = rest.split_at_checked(at).unwrap_or((rest, &[]));
        out.write_all(plain)?;
        let Some((&byte, after)) = special.split_first() else {
            return Ok(());
        };
        match byte {
            b'"' => out.write_all(br#"\""#)?,
            b'\\' => out.write_all(br"\\")?,
            byte => out.write_all(&control_escape(byte))?,
        }
        rest = after;
    }
}

/// Hands `text` as JSON string text (quotes included) to `piece`, in pieces: the quotes, runs
/// of bytes that need no escape, and each escape, written exactly as serde_json writes them
/// (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`).
pub(crate) fn json_string_pieces<E>(
    text: &str,
    mut piece: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    piece("\"")?;
    let mut rest = text;
    loop {
        let at = next_needing_escape(rest.as_bytes(), 0);
        // `at` is the index of an ASCII byte or the end: a character boundary.
        let (plain, special) = rest.split_at_checked(at).unwrap_or((rest, ""));
        if !plain.is_empty() {
            piece(plain)?;
        }
        let Some(byte) = special.bytes().next() else {
            return piece("\"");
        };
        let control;
        piece(match byte {
            b'"' => r#"\""#,
            b'\\' => r"\\",
            0x08 => r"\b",
            0x0c => r"\f",
            b'\n' => r"\n",
            b'\r' => r"\r",
            b'\t' => r"\t",
            byte => {
                control = control_escape(byte);
                std::str::from_utf8(&control).unwrap_or_default()
            }
        })?;
        rest = special.get(1..).unwrap_or_default();
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
        // Raw JSON text (a `RawValue`, or a long string's text from `python::PySerializer`)
        // may hold anything: escaped as `Escaped` does, straight into the writer.
        write_escaped(writer, fragment.as_bytes())
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
/// The first [`NEAR`] bytes are checked a word at a time (in JSON text, escapes come close
/// together); then [`BLOCK`] bytes at a time: whether a block holds such a byte is a comparison
/// per byte folded with `|`, with no early exit, which the compiler turns into vector
/// instructions (SSE2 on any x86-64: about one instruction per 4 bytes, against about two per
/// byte for words); the block that holds one, and what is left after the last, a word at a
/// time; the last bytes one by one.
///
/// A word's test: for each byte, `byte - n` borrows into its top bit where `byte < n` (the
/// classic "has a byte less than n" word test), and `"` and `\` are found as zero bytes of the
/// word XORed with them. A borrow can flag bytes above a true match, never below one, so the
/// lowest flagged byte is the first match.
#[inline(always)]
pub(crate) fn next_needing_escape(bytes: &[u8], mut at: usize) -> usize {
    let near = at + NEAR;
    while at < near {
        match word_at(bytes, at) {
            Some(0) => at += 8,
            Some(found) => return at + found_at(found),
            None => return bytes_from(bytes, at),
        }
    }
    // Two word loops, before and after the blocks, rather than one that skips the blocks when
    // it reaches them: the one loop cost the 100 B call 0.4 K instructions more (callgrind),
    // the scan running several times per message.
    while let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<BLOCK>()) {
        let special = block.iter().fold(0u8, |found, &byte| {
            found | u8::from(byte < 0x20) | u8::from(byte == b'"') | u8::from(byte == b'\\')
        });
        if special != 0 {
            break;
        }
        at += BLOCK;
    }
    loop {
        match word_at(bytes, at) {
            Some(0) => at += 8,
            Some(found) => return at + found_at(found),
            None => return bytes_from(bytes, at),
        }
    }
}

/// The top bits of the bytes needing escape in the 8 bytes from `at` (0 if none); `None` if
/// fewer than 8 bytes are left.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const TOPS: u64 = ONES << 7;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let word = u64::from_le_bytes(*bytes.get(at..)?.first_chunk::<8>()?);
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    Some((below(word, 0x20) | below(quote, 1) | below(backslash, 1)) & TOPS)
}

/// The index in its word of the first byte [`word_at`] flagged.
#[inline]
fn found_at(found: u64) -> usize {
    // Little-endian: the lowest bit is the first byte.
    (found.trailing_zeros() / 8) as usize
}

/// [`next_needing_escape`] a byte at a time.
#[inline]
fn bytes_from(bytes: &[u8], mut at: usize) -> usize {
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
pub(super) fn unescape_one(after: &[u8]) -> Option<(char, usize)> {
    let letter = *after.first()?;
    if let Some(unescaped) = short_escape(letter) {
        return Some((unescaped, 1));
    }
    if letter != b'u' {
        return None;
    }
    match hex4(after.get(1..)?)? {
        high @ 0xD800..=0xDBFF => {
            // A high surrogate must be followed by an escaped low surrogate.
            let low = after
                .get(5..)
                .and_then(|rest| rest.strip_prefix(b"\\u"))
                .and_then(hex4)?;
            Some((surrogate_pair(high, low)?, 11))
        }
        code => Some((char::from_u32(code)?, 5)),
    }
}

/// The character of a JSON escape of one letter after its backslash (`\"`, `\\`, `\/`, `\b`,
/// `\f`, `\n`, `\r`, `\t`); `None` for any other letter (`u` included).
#[inline]
pub(super) fn short_escape(letter: u8) -> Option<char> {
    Some(match letter {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

/// The character of the UTF-16 pair of the high surrogate `high` and `low`; `None` when `low`
/// is not a low surrogate.
pub(super) fn surrogate_pair(high: u32, low: u32) -> Option<char> {
    if !(0xDC00..=0xDFFF).contains(&low) {
        return None;
    }
    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
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
        // Every byte value at every place of the first words of a 150-byte run and around the
        // edges of its blocks (from its start: two words, two blocks, a word and a tail), alone
        // and after another special byte, on a background of plain bytes of every kind.
        let places = (0..20).chain([31, 63, 64, 79, 80, 81, 87, 88, 100, 143, 144, 145, 149]);
        for background in [b'x', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
            for special in 0..=255u8 {
                for place in places.clone() {
                    for earlier in [None, Some((b'"', 3)), Some((0x1f, 90))] {
                        let mut bytes = vec![background; 150];
                        bytes[place] = special;
                        if let Some((byte, at)) = earlier {
                            bytes[at] = byte;
                        }
                        for from in [0, 1, 5, 12, 19, 64, 81, 150] {
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
