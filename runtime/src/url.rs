//! Parsing of transport URLs exactly like oslo.messaging's `TransportURL.parse`:
//! `scheme://[user:pass@]host[:port][,[user:pass@]host2[:port]...]/[vhost][?query]`.
//! Passwords never appear in `Debug`, `Display` or error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use percent_encoding::{
    AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode,
};

/// AMQP port used when a host entry names none.
const DEFAULT_PORT: u16 = 5672;
/// kombu's user name for host entries without credentials.
const DEFAULT_USERNAME: &str = "guest";
/// kombu's password for host entries without credentials.
const DEFAULT_PASSWORD: &str = "guest";
/// Host used by a `rabbit://` URL that names no host.
const DEFAULT_HOSTNAME: &str = "localhost";
/// The virtual host of a URL with an empty path.
const ROOT_VHOST: &str = "/";
/// What is shown instead of a password.
const MASK: &str = "****";

/// Percent-encoded in user names and the virtual host when a URL is displayed.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Percent-encoded in query keys and values when a URL is displayed.
const QUERY: &AsciiSet = &COMPONENT.remove(b',').remove(b':').remove(b'/');
/// Percent-encoded in an IPv6 literal (between the brackets) when displayed.
const IPV6_HOST: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'@')
    .add(b',')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'[')
    .add(b']');
/// Percent-encoded in any other host name when displayed.
const HOST: &AsciiSet = &IPV6_HOST.add(b':');

/// Which driver a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// The in-process driver: `memory://`.
    Memory,
    /// The RabbitMQ (AMQP 0-9-1) driver: `rabbit://`, or its alias `kombu://`.
    Rabbit,
}

impl Scheme {
    /// The canonical scheme name: `"memory"` or `"rabbit"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Memory => "memory",
            Scheme::Rabbit => "rabbit",
        }
    }

    /// Looks a scheme up by name, ignoring ASCII case.
    fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("memory") {
            Some(Scheme::Memory)
        } else if name.eq_ignore_ascii_case("rabbit") || name.eq_ignore_ascii_case("kombu") {
            Some(Scheme::Rabbit)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transport URL could not be parsed.
///
/// No message ever contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL does not start with `scheme://` (or the scheme is empty or
    /// not made of letters, digits, `+`, `-` and `.` starting with a letter).
    #[error(
        "transport URL has no scheme: expected `<scheme>://...`, e.g. `rabbit://user:pass@host:5672/`"
    )]
    MissingScheme,
    /// The scheme names no driver of this library.
    #[error(
        "unsupported transport URL scheme `{scheme}`; supported schemes: memory, rabbit (alias kombu)"
    )]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
    },
    /// A port is not a number from 1 to 65535.
    #[error(
        "invalid port `{port}` for host `{host}` in transport URL: expected a number from 1 to 65535"
    )]
    InvalidPort {
        /// The host name the port belongs to, as written.
        host: String,
        /// The port text, as written.
        port: String,
    },
    /// A host entry has an empty host name, e.g. `user:pass@:5672` or `[]`.
    #[error("host #{position} in transport URL has an empty hostname")]
    EmptyHostname {
        /// 1-based position of the entry in the comma-separated host list
        /// (empty entries, which are skipped, count too).
        position: usize,
    },
    /// A host is malformed, e.g. the unterminated `[::1`.
    #[error("invalid host `{host}` in transport URL: {reason}")]
    InvalidHost {
        /// The host part of the entry, as written (credentials left out).
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host entry without `@` is malformed while the URL has credentials
    /// elsewhere: its text may be part of a password holding an unencoded
    /// `,`, `/`, `?` or `#`, so it is not quoted.
    #[error(
        "host #{position} in transport URL is malformed; a user name or password containing `,`, `/`, `?` or `#` must be percent-encoded"
    )]
    MalformedHostEntry {
        /// 1-based position of the entry in the comma-separated host list
        /// (empty entries, which are skipped, count too).
        position: usize,
    },
    /// A query option that is not a transport option (oslo refuses those too).
    #[error("unknown transport option `{name}`")]
    UnknownOption {
        /// The option's name.
        name: String,
    },
    /// A query option's value does not parse.
    #[error("transport option `{name}` = {value:?} is invalid: expected {expected}")]
    InvalidOption {
        /// The option's name.
        name: String,
        /// The value given.
        value: String,
        /// What the option takes.
        expected: &'static str,
    },
}

/// One broker of a parsed transport URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransportHost {
    hostname: String,
    port: u16,
    username: String,
    password: String,
}

impl TransportHost {
    /// The host name or address, percent-decoded; an IPv6 address is given
    /// without its brackets.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The port; 5672 when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, percent-decoded; `"guest"` for an entry without
    /// credentials.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The clear-text password, percent-decoded; `"guest"` for an entry
    /// without credentials, `""` for `user@host`. It is never logged:
    /// `Debug` and `Display` show `****` instead.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Writes `host:port`, with an IPv6 address in brackets.
    fn fmt_host_port(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_ipv6_literal(&self.hostname) {
            write!(f, "[{}]", utf8_percent_encode(&self.hostname, IPV6_HOST))?;
        } else {
            write!(f, "{}", utf8_percent_encode(&self.hostname, HOST))?;
        }
        write!(f, ":{}", self.port)
    }
}

impl fmt::Debug for TransportHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportHost")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &format_args!("{MASK}"))
            .finish()
    }
}

/// `user:****@host:port`, the user name percent-encoded.
impl fmt::Display for TransportHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{MASK}@",
            utf8_percent_encode(&self.username, COMPONENT)
        )?;
        self.fmt_host_port(f)
    }
}

/// A parsed transport URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransportUrl {
    scheme: Scheme,
    hosts: Vec<TransportHost>,
    virtual_host: String,
    options: BTreeMap<String, String>,
}

impl TransportUrl {
    /// Parses `scheme://[user:pass@]host[:port][,...]/[vhost][?query]` the
    /// way oslo.messaging's `TransportURL.parse` does.
    ///
    /// A `rabbit://` URL without hosts gets `guest:guest@localhost:5672`; a
    /// `memory://` URL keeps an empty host list. An empty path means the
    /// virtual host `/`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        // Like Python's urlsplit: leading C0 controls and spaces are dropped,
        // and so are tabs and line breaks anywhere.
        let cleaned: String = url
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect();

        let (scheme_text, rest) = cleaned.split_once(':').ok_or(UrlError::MissingScheme)?;
        let rest = rest.strip_prefix("//").ok_or(UrlError::MissingScheme)?;
        if !is_scheme_syntax(scheme_text) {
            return Err(UrlError::MissingScheme);
        }
        let scheme = Scheme::from_name(scheme_text).ok_or_else(|| UrlError::UnsupportedScheme {
            scheme: scheme_text.to_owned(),
        })?;

        let netloc_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (netloc, tail) = rest.split_at(netloc_end);
        let tail = tail
            .split_once('#')
            .map_or(tail, |(before, _fragment)| before);
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));

        let url_has_credentials = rest.contains('@');
        let mut hosts = Vec::new();
        for (index, entry) in netloc.split(',').enumerate() {
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            match parse_host_entry(entry, position) {
                Ok(host) => hosts.push(host),
                Err(UrlError::InvalidPort { .. } | UrlError::InvalidHost { .. })
                    if url_has_credentials && !entry.contains('@') =>
                {
                    return Err(UrlError::MalformedHostEntry { position });
                }
                Err(error) => return Err(error),
            }
        }
        if hosts.is_empty() && scheme == Scheme::Rabbit {
            hosts.push(TransportHost {
                hostname: DEFAULT_HOSTNAME.to_owned(),
                port: DEFAULT_PORT,
                username: DEFAULT_USERNAME.to_owned(),
                password: DEFAULT_PASSWORD.to_owned(),
            });
        }

        let mut virtual_host = decode(path.strip_prefix('/').unwrap_or(path));
        if virtual_host.is_empty() {
            virtual_host = ROOT_VHOST.to_owned();
        }

        Ok(TransportUrl {
            scheme,
            hosts,
            virtual_host,
            options: parse_query(query),
        })
    }

    /// The driver the URL selects.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The brokers, in the order written; never empty for `rabbit`.
    pub fn hosts(&self) -> &[TransportHost] {
        &self.hosts
    }

    /// The virtual host, percent-decoded; `/` when the path is empty.
    pub fn virtual_host(&self) -> &str {
        &self.virtual_host
    }

    /// The query options, kept for the driver: decoded like Python's
    /// `parse_qs` (blank values dropped), repeated keys joined with `,`.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// The query option `name`, if the URL has it.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

impl FromStr for TransportUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransportUrl::parse(s)
    }
}

impl fmt::Debug for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportUrl")
            .field("scheme", &self.scheme)
            .field("hosts", &self.hosts)
            .field("virtual_host", &self.virtual_host)
            .field("options", &self.options)
            .finish()
    }
}

/// The URL with every password shown as `****`, e.g.
/// `rabbit://guest:****@localhost:5672/`.
impl fmt::Display for TransportUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        for (index, host) in self.hosts.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{host}")?;
        }
        f.write_str("/")?;
        if self.virtual_host != ROOT_VHOST {
            write!(f, "{}", utf8_percent_encode(&self.virtual_host, COMPONENT))?;
        }
        for (index, (key, value)) in self.options.iter().enumerate() {
            f.write_str(if index == 0 { "?" } else { "&" })?;
            write!(
                f,
                "{}={}",
                utf8_percent_encode(key, QUERY),
                utf8_percent_encode(value, QUERY)
            )?;
        }
        Ok(())
    }
}

/// Python's scheme syntax: an ASCII letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme_syntax(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Percent-decodes like Python's `unquote`: invalid escapes stay as they are,
/// invalid UTF-8 becomes U+FFFD.
fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Decodes a query key or value like Python's `parse_qs`: `+` is a space.
fn decode_form(text: &str) -> String {
    decode(&text.replace('+', " "))
}

/// Whether `text` is an IPv6 address, optionally with a `%zone` suffix
/// (as Python's `ipaddress` accepts inside brackets).
fn is_ipv6_literal(text: &str) -> bool {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    zone.is_none_or(|zone| !zone.is_empty() && !zone.contains('%'))
        && address.parse::<Ipv6Addr>().is_ok()
}

/// Parses a port: ASCII digits only, 1 to 65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|&port| port != 0)
}

/// Parses one non-empty entry of the comma-separated host list.
fn parse_host_entry(entry: &str, position: usize) -> Result<TransportHost, UrlError> {
    let (username, password, host_part) = match entry.rsplit_once('@') {
        Some((credentials, host_part)) => match credentials.split_once(':') {
            Some((user, password)) => (decode(user), decode(password), host_part),
            None => (decode(credentials), String::new(), host_part),
        },
        None => (
            DEFAULT_USERNAME.to_owned(),
            DEFAULT_PASSWORD.to_owned(),
            entry,
        ),
    };

    let invalid_host = |reason| UrlError::InvalidHost {
        host: host_part.to_owned(),
        reason,
    };
    let (hostname, port_text) = if let Some(bracketed) = host_part.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid_host("unterminated `[`"))?;
        if inside.is_empty() {
            return Err(UrlError::EmptyHostname { position });
        }
        if !is_ipv6_literal(inside) {
            return Err(invalid_host("not an IPv6 address between `[` and `]`"));
        }
        let port_text = if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| invalid_host("unexpected text after `]`"))?,
            )
        };
        (inside, port_text)
    } else if host_part.contains(['[', ']']) {
        return Err(invalid_host(
            "`[` or `]` outside an IPv6 address written as `[address]` or `[address]:port`",
        ));
    } else {
        match host_part.split_once(':') {
            Some((hostname, port_text)) => (hostname, Some(port_text)),
            None => (host_part, None),
        }
    };

    if hostname.is_empty() {
        return Err(UrlError::EmptyHostname { position });
    }
    let port = match port_text {
        None | Some("") => DEFAULT_PORT,
        Some(text) => parse_port(text).ok_or_else(|| UrlError::InvalidPort {
            host: hostname.to_owned(),
            port: text.to_owned(),
        })?,
    };

    Ok(TransportHost {
        hostname: decode(hostname),
        port,
        username,
        password,
    })
}

/// Parses a query like Python's `parse_qs` with its defaults: fields split on
/// `&`, fields without `=` or with an empty value dropped, repeated keys
/// joined with `,` in order of appearance.
fn parse_query(query: &str) -> BTreeMap<String, String> {
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    for field in query.split('&') {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let value = decode_form(value);
        match options.entry(decode_form(key)) {
            std::collections::btree_map::Entry::Occupied(mut joined) => {
                let joined = joined.get_mut();
                joined.push(',');
                joined.push_str(&value);
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_accepts_only_digits_in_range() {
        assert_eq!(parse_port("1"), Some(1));
        assert_eq!(parse_port("065535"), Some(65535));
        for bad in ["", "0", "65536", "+1", "-1", " 1", "1 ", "1_0", "0x10", "٣"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv6_literal_allows_a_zone() {
        assert!(is_ipv6_literal("::1"));
        assert!(is_ipv6_literal("fe80::1%eth0"));
        assert!(is_ipv6_literal("fe80::1%25eth0"));
        assert!(!is_ipv6_literal("fe80::1%"));
        assert!(!is_ipv6_literal("fe80::1%a%b"));
        assert!(!is_ipv6_literal("127.0.0.1"));
        assert!(!is_ipv6_literal("localhost"));
    }

    #[test]
    fn scheme_syntax_follows_python() {
        assert!(is_scheme_syntax("rabbit"));
        assert!(is_scheme_syntax("kombu+amqp"));
        assert!(!is_scheme_syntax(""));
        assert!(!is_scheme_syntax("1rabbit"));
        assert!(!is_scheme_syntax("rab bit"));
        assert!(!is_scheme_syntax("rabbit@"));
    }

    #[test]
    fn query_follows_parse_qs() {
        let options = parse_query("a=1&&b&c=&a=2&d=x+y%2B&=v&e=%zz");
        let expected: BTreeMap<String, String> =
            [("", "v"), ("a", "1,2"), ("d", "x y+"), ("e", "%zz")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(options, expected);
    }

    #[test]
    fn decode_keeps_invalid_escapes_and_replaces_bad_utf8() {
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz%41"), "%zzA");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }
}
