//! Transport URL parsing: the rules of oslo.messaging's `TransportURL.parse`,
//! password masking, and errors on malformed URLs.

use amqp_rpc::{Scheme, TransportUrl, UrlError};

/// Parses `text`, failing the test with the error if it does not parse.
fn parse(text: &str) -> TransportUrl {
    match TransportUrl::parse(text) {
        Ok(url) => url,
        Err(error) => panic!("{text:?} should parse, got {error:?}"),
    }
}

/// Parses `text`, failing the test if it parses.
fn parse_err(text: &str) -> UrlError {
    match TransportUrl::parse(text) {
        Ok(url) => panic!("{text:?} should not parse, got {url:?}"),
        Err(error) => error,
    }
}

/// The hosts as `(username, password, hostname, port)`.
fn hosts(url: &TransportUrl) -> Vec<(&str, &str, &str, u16)> {
    url.hosts()
        .iter()
        .map(|h| (h.username(), h.password(), h.hostname(), h.port()))
        .collect()
}

fn options(url: &TransportUrl) -> Vec<(&str, &str)> {
    url.options()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn empty_rabbit_url_defaults_to_guest_at_localhost() {
    for text in ["rabbit://", "rabbit:///", "rabbit://,,/", "rabbit://?x=1"] {
        let url = parse(text);
        assert_eq!(url.scheme(), Scheme::Rabbit, "{text}");
        assert_eq!(
            hosts(&url),
            [("guest", "guest", "localhost", 5672)],
            "{text}"
        );
        assert_eq!(url.virtual_host(), "/", "{text}");
    }
    assert_eq!(options(&parse("rabbit://")), []);
    assert_eq!(options(&parse("rabbit://?x=1")), [("x", "1")]);
}

#[test]
fn host_without_credentials_gets_guest_and_default_port() {
    let url = parse("rabbit://broker");
    assert_eq!(hosts(&url), [("guest", "guest", "broker", 5672)]);
}

#[test]
fn empty_port_means_default_port() {
    let url = parse("rabbit://u:p@broker:/");
    assert_eq!(hosts(&url), [("u", "p", "broker", 5672)]);
    let url = parse("rabbit://[::1]:/");
    assert_eq!(hosts(&url), [("guest", "guest", "::1", 5672)]);
}

#[test]
fn credentials_split_at_last_at_sign() {
    let url = parse("rabbit://a@b:pw@host/");
    assert_eq!(hosts(&url), [("a@b", "pw", "host", 5672)]);
    assert_eq!(url.virtual_host(), "/");

    // The password may hold an unencoded '@' as well.
    let url = parse("rabbit://user:p@ss@host:5673");
    assert_eq!(hosts(&url), [("user", "p@ss", "host", 5673)]);
}

#[test]
fn password_colon_split_at_first_colon() {
    let url = parse("rabbit://user:pa:ss@host:5673/");
    assert_eq!(hosts(&url), [("user", "pa:ss", "host", 5673)]);

    let url = parse("rabbit://:secret@host");
    assert_eq!(hosts(&url), [("", "secret", "host", 5672)]);

    let url = parse("rabbit://user:@host");
    assert_eq!(hosts(&url), [("user", "", "host", 5672)]);
}

#[test]
fn user_without_colon_has_empty_password() {
    let url = parse("rabbit://user@host:5673");
    assert_eq!(hosts(&url), [("user", "", "host", 5673)]);

    let url = parse("rabbit://@host");
    assert_eq!(hosts(&url), [("", "", "host", 5672)]);
}

#[test]
fn percent_encoded_credentials_are_decoded() {
    let url =
        parse("rabbit://us%40er:p%3Ass@h1:5672,u2:p2@h2:5673/vh?heartbeat_timeout_threshold=30");
    assert_eq!(
        hosts(&url),
        [("us@er", "p:ss", "h1", 5672), ("u2", "p2", "h2", 5673)]
    );
    assert_eq!(url.virtual_host(), "vh");
    assert_eq!(url.option("heartbeat_timeout_threshold"), Some("30"));

    // Encoded '/', ',', '#', '?' and non-ASCII in a password.
    let url = parse("rabbit://n%C3%B6va:a%2Fb%2Cc%23d%3Fe%20f@host/");
    assert_eq!(hosts(&url), [("növa", "a/b,c#d?e f", "host", 5672)]);

    // Invalid escapes stay as they are (like Python's unquote); bad UTF-8
    // becomes U+FFFD.
    let url = parse("rabbit://u%:p%zz%4@host/");
    assert_eq!(hosts(&url), [("u%", "p%zz%4", "host", 5672)]);
    let url = parse("rabbit://u%FF:p@host/");
    assert_eq!(hosts(&url), [("u\u{FFFD}", "p", "host", 5672)]);
}

#[test]
fn percent_encoded_hostname_is_decoded() {
    let url = parse("rabbit://my%2Dhost:5673/");
    assert_eq!(hosts(&url), [("guest", "guest", "my-host", 5673)]);
}

#[test]
fn several_hosts_each_with_credentials() {
    let url = parse("rabbit://u1:p1@h1:5672,u2:p2@h2:5673,u3:p3@h3/nova");
    assert_eq!(
        hosts(&url),
        [
            ("u1", "p1", "h1", 5672),
            ("u2", "p2", "h2", 5673),
            ("u3", "p3", "h3", 5672),
        ]
    );
    assert_eq!(url.virtual_host(), "nova");
}

#[test]
fn hosts_with_and_without_credentials_may_be_mixed() {
    let url = parse("rabbit://h1,u:p@h2:5673,h3:5674/");
    assert_eq!(
        hosts(&url),
        [
            ("guest", "guest", "h1", 5672),
            ("u", "p", "h2", 5673),
            ("guest", "guest", "h3", 5674),
        ]
    );
}

#[test]
fn empty_host_entries_are_skipped() {
    let url = parse("rabbit://,h1,,h2:5673,/");
    assert_eq!(
        hosts(&url),
        [
            ("guest", "guest", "h1", 5672),
            ("guest", "guest", "h2", 5673)
        ]
    );
}

#[test]
fn empty_path_means_root_vhost() {
    for text in [
        "rabbit://h",
        "rabbit://h/",
        "rabbit://h?a=1",
        "rabbit://h#x",
    ] {
        assert_eq!(parse(text).virtual_host(), "/", "{text}");
    }
}

#[test]
fn double_slash_path_means_root_vhost() {
    let url = parse("rabbit://h//");
    assert_eq!(url.virtual_host(), "/");
    assert_eq!(hosts(&url), [("guest", "guest", "h", 5672)]);
}

#[test]
fn named_vhost() {
    let url = parse("rabbit://u:p@h:5672/nova");
    assert_eq!(url.virtual_host(), "nova");
    // Only the single leading '/' is removed.
    assert_eq!(parse("rabbit://h/a/b/").virtual_host(), "a/b/");
    assert_eq!(parse("rabbit://h//prod").virtual_host(), "/prod");
}

#[test]
fn percent_encoded_vhost() {
    assert_eq!(parse("rabbit://h/%2Fprod").virtual_host(), "/prod");
    assert_eq!(parse("rabbit://h/my%20vhost").virtual_host(), "my vhost");
    assert_eq!(parse("rabbit://h/%2F").virtual_host(), "/");
    // '+' is not a space in the path.
    assert_eq!(parse("rabbit://h/a+b").virtual_host(), "a+b");
}

#[test]
fn ipv6_host_with_port() {
    let url = parse("rabbit://u:p@[::1]:5673,[fe80::1%25eth0],[2001:db8::7]/vh");
    assert_eq!(
        hosts(&url),
        [
            ("u", "p", "::1", 5673),
            ("guest", "guest", "fe80::1%eth0", 5672),
            ("guest", "guest", "2001:db8::7", 5672),
        ]
    );
    assert_eq!(url.virtual_host(), "vh");
}

#[test]
fn malformed_ipv6_host_is_error() {
    let error = parse_err("rabbit://u:p@[::1/");
    assert!(
        matches!(&error, UrlError::InvalidHost { host, .. } if host == "[::1"),
        "{error:?}"
    );
    for (text, host) in [
        ("rabbit://[::1]x:5672/", "[::1]x:5672"),
        ("rabbit://[not-ipv6]/", "[not-ipv6]"),
        ("rabbit://[127.0.0.1]/", "[127.0.0.1]"),
        ("rabbit://ho]st/", "ho]st"),
        ("rabbit://h[::1]/", "h[::1]"),
    ] {
        let error = parse_err(text);
        assert!(
            matches!(&error, UrlError::InvalidHost { host: h, .. } if h == host),
            "{text}: {error:?}"
        );
    }
    // A bad port after the brackets is a port error.
    assert_eq!(
        parse_err("rabbit://[::1]:x/"),
        UrlError::InvalidPort {
            host: "::1".to_owned(),
            port: "x".to_owned()
        }
    );
}

#[test]
fn empty_hostname_is_error() {
    assert_eq!(
        parse_err("rabbit://user:pass@:5672/"),
        UrlError::EmptyHostname { position: 1 }
    );
    assert_eq!(
        parse_err("rabbit://h1,[]/"),
        UrlError::EmptyHostname { position: 2 }
    );
    // Skipped empty entries still count in the position.
    assert_eq!(
        parse_err("rabbit://h1,,@/"),
        UrlError::EmptyHostname { position: 3 }
    );
    assert_eq!(
        parse_err("rabbit://:@:"),
        UrlError::EmptyHostname { position: 1 }
    );
    assert_eq!(
        parse_err("rabbit://::1/"),
        UrlError::EmptyHostname { position: 1 }
    );
    let message = parse_err("rabbit://h1,[]:5672/").to_string();
    assert!(message.contains("#2"), "{message}");
}

#[test]
fn query_options_kept_and_repeated_keys_joined() {
    let url = parse("rabbit://h/vh?a=1&b=x+y&a=2&c=%2B%26&&d&e=&ssl=true&a=3#frag");
    assert_eq!(
        options(&url),
        [("a", "1,2,3"), ("b", "x y"), ("c", "+&"), ("ssl", "true")]
    );
    assert_eq!(url.option("a"), Some("1,2,3"));
    assert_eq!(url.option("ssl"), Some("true"));
    // Like parse_qs: fields without '=' or with an empty value are dropped.
    assert_eq!(url.option("d"), None);
    assert_eq!(url.option("e"), None);
    assert_eq!(url.option("missing"), None);
    assert_eq!(url.virtual_host(), "vh");
}

#[test]
fn fragment_is_ignored() {
    let url = parse("rabbit://h/vh#frag?a=1");
    assert_eq!(url.virtual_host(), "vh");
    assert_eq!(options(&url), []);

    let url = parse("rabbit://h#frag/other");
    assert_eq!(url.virtual_host(), "/");
    assert_eq!(hosts(&url), [("guest", "guest", "h", 5672)]);
}

#[test]
fn kombu_scheme_is_rabbit() {
    let url = parse("kombu://u:p@h:5673/v");
    assert_eq!(url.scheme(), Scheme::Rabbit);
    assert_eq!(url.scheme().as_str(), "rabbit");
    assert_eq!(hosts(&url), [("u", "p", "h", 5673)]);
    assert_eq!(url.virtual_host(), "v");
}

#[test]
fn scheme_is_case_insensitive() {
    assert_eq!(parse("RABBIT://h").scheme(), Scheme::Rabbit);
    assert_eq!(parse("Kombu://h").scheme(), Scheme::Rabbit);
    assert_eq!(parse("MeMoRy://").scheme(), Scheme::Memory);
    assert_eq!(Scheme::Memory.as_str(), "memory");
}

#[test]
fn memory_url_has_no_hosts_and_root_vhost() {
    for text in ["memory://", "memory:///", "memory://,/", "memory://?a=1"] {
        let url = parse(text);
        assert_eq!(url.scheme(), Scheme::Memory, "{text}");
        assert_eq!(hosts(&url), [], "{text}");
        assert_eq!(url.virtual_host(), "/", "{text}");
    }
}

#[test]
fn memory_url_with_vhost() {
    let url = parse("memory:///test");
    assert_eq!(hosts(&url), []);
    assert_eq!(url.virtual_host(), "test");

    let url = parse("memory://u:p@node:1234/v%20x?k=v");
    assert_eq!(hosts(&url), [("u", "p", "node", 1234)]);
    assert_eq!(url.virtual_host(), "v x");
    assert_eq!(url.option("k"), Some("v"));
}

#[test]
fn from_str_parses_too() {
    let url: TransportUrl = match "rabbit://u:p@h:5673/v".parse() {
        Ok(url) => url,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(url, parse("rabbit://u:p@h:5673/v"));
    assert!("nope".parse::<TransportUrl>().is_err());
}

#[test]
fn leading_spaces_and_line_breaks_are_dropped_like_python() {
    let url = parse("  rabbit://h/vh\n");
    assert_eq!(hosts(&url), [("guest", "guest", "h", 5672)]);
    assert_eq!(url.virtual_host(), "vh");
    assert_eq!(parse("rabbit://h:56\t72/").hosts()[0].port(), 5672);
}

#[test]
fn unknown_scheme_is_error_naming_supported() {
    let error = parse_err("amqp://guest:guest@h:5672/");
    assert_eq!(
        error,
        UrlError::UnsupportedScheme {
            scheme: "amqp".to_owned()
        }
    );
    let message = error.to_string();
    for expected in ["`amqp`", "memory", "rabbit", "kombu"] {
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(
        parse_err("fake://"),
        UrlError::UnsupportedScheme {
            scheme: "fake".to_owned()
        }
    );
}

#[test]
fn missing_scheme_is_error() {
    for text in [
        "",
        "   ",
        "localhost:5672",
        "guest:guest@localhost:5672/",
        "://h",
        "rabbit:/h",
        "rabbit:h",
        "rabbit//h",
        "1abc://h",
        "rab bit://h",
    ] {
        assert_eq!(parse_err(text), UrlError::MissingScheme, "{text:?}");
    }
    assert!(UrlError::MissingScheme.to_string().contains("://"));
}

#[test]
fn bad_port_is_error() {
    assert_eq!(
        parse_err("rabbit://u:p@h:abc/"),
        UrlError::InvalidPort {
            host: "h".to_owned(),
            port: "abc".to_owned()
        }
    );
    for port in ["-1", "+5672", "56 72", "5672x", "0x10", "5_672"] {
        let text = format!("rabbit://h:{port}/");
        assert_eq!(
            parse_err(&text),
            UrlError::InvalidPort {
                host: "h".to_owned(),
                port: port.to_owned(),
            },
            "{text}"
        );
    }
    // Like oslo, the port starts after the first ':' of the host part.
    assert_eq!(
        parse_err("rabbit://a:1:2/"),
        UrlError::InvalidPort {
            host: "a".to_owned(),
            port: "1:2".to_owned()
        }
    );
    let message = parse_err("rabbit://h:abc/").to_string();
    assert!(
        message.contains("`abc`") && message.contains("`h`"),
        "{message}"
    );
}

#[test]
fn port_out_of_range_is_error() {
    for port in ["0", "65536", "99999", "123456789012345678901234567890"] {
        let text = format!("rabbit://u:p@h:{port}/");
        assert_eq!(
            parse_err(&text),
            UrlError::InvalidPort {
                host: "h".to_owned(),
                port: port.to_owned()
            },
            "{text}"
        );
    }
    assert_eq!(parse("rabbit://h:65535/").hosts()[0].port(), 65535);
    assert_eq!(parse("rabbit://h:1/").hosts()[0].port(), 1);
}

#[test]
fn password_masked_in_debug_and_display() {
    let secret = "S3cr3tPw";
    let url = parse(&format!(
        "rabbit://admin:{secret}@h1:5673,other:{secret}@[::1]/nova?ssl=1"
    ));
    let host = &url.hosts()[0];
    assert_eq!(host.password(), secret);
    for shown in [
        format!("{url:?}"),
        format!("{url:#?}"),
        format!("{url}"),
        format!("{host:?}"),
        format!("{host}"),
    ] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("****"), "{shown}");
    }
    assert_eq!(format!("{host}"), "admin:****@h1:5673");
    assert_eq!(format!("{}", url.hosts()[1]), "other:****@[::1]:5672");
    assert_eq!(
        format!("{url}"),
        "rabbit://admin:****@h1:5673,other:****@[::1]:5672/nova?ssl=1"
    );
}

#[test]
fn display_renders_canonical_url() {
    assert_eq!(
        parse("rabbit://").to_string(),
        "rabbit://guest:****@localhost:5672/"
    );
    assert_eq!(
        parse("kombu://h/").to_string(),
        "rabbit://guest:****@h:5672/"
    );
    assert_eq!(
        parse("rabbit://us%40er:pw@h/%2Fprod?b=x+y&a=1&a=2").to_string(),
        "rabbit://us%40er:****@h:5672/%2Fprod?a=1,2&b=x%20y"
    );
    assert_eq!(parse("memory://").to_string(), "memory:///");
    assert_eq!(parse("memory:///nova").to_string(), "memory:///nova");
    assert_eq!(
        parse("rabbit://[fe80::1%25eth0]:5673").to_string(),
        "rabbit://guest:****@[fe80::1%25eth0]:5673/"
    );
}

#[test]
fn display_round_trips_except_passwords() {
    for text in [
        "rabbit://us%40er:p%3Ass@h1:5672,u2:p2@h2:5673/vh?heartbeat_timeout_threshold=30",
        "rabbit://h/%2Fprod?k=a%26b%3Dc%2B+d&k=2",
        "rabbit://a%3Ab%2C/my%20vhost",
        "memory://x@[fe80::1%25eth0]/v",
        "rabbit://n%C3%B6va:x@h%25zz/%FF?%3D=%23",
    ] {
        let url = parse(text);
        let again = parse(&url.to_string());
        assert_same_except_passwords(&url, &again);
    }
}

fn assert_same_except_passwords(url: &TransportUrl, again: &TransportUrl) {
    let strip = |u: &TransportUrl| {
        u.hosts()
            .iter()
            .map(|h| (h.username().to_owned(), h.hostname().to_owned(), h.port()))
            .collect::<Vec<_>>()
    };
    assert_eq!(url.scheme(), again.scheme(), "{url:?} vs {again:?}");
    assert_eq!(strip(url), strip(again), "{url:?} vs {again:?}");
    assert_eq!(url.virtual_host(), again.virtual_host(), "{url:?}");
    assert_eq!(url.options(), again.options(), "{url:?}");
}

#[test]
fn error_messages_never_contain_password() {
    let secret = "Sw0rdf1sh";
    for (text, leak) in [
        (format!("rabbit://user:{secret}@host:notaport/"), secret),
        (format!("rabbit://user:{secret}@host:0/"), secret),
        (format!("rabbit://user:{secret}@[::1/"), secret),
        (format!("rabbit://user:{secret}@[::1]junk/"), secret),
        (format!("rabbit://user:{secret}@/"), secret),
        (format!("amqp://user:{secret}@host/"), secret),
        // Unencoded ',' or '/' in a password: the part before it looks like
        // `host:port` but is never quoted.
        ("rabbit://user:Sw0r,df1sh@host/".to_owned(), "Sw0r"),
        ("rabbit://user:Sw0r/df1sh@host/".to_owned(), "Sw0r"),
        ("rabbit://user:Sw0r?df1sh@host/".to_owned(), "Sw0r"),
        ("rabbit://user:Sw0r#df1sh@host/".to_owned(), "Sw0r"),
        ("rabbit://h1,user:Sw0r[,x@host/".to_owned(), "Sw0r"),
    ] {
        let error = parse_err(&text);
        let message = error.to_string();
        let debug = format!("{error:?}");
        assert!(!message.contains(leak), "{text}: {message}");
        assert!(!debug.contains(leak), "{text}: {debug}");
    }
    assert_eq!(
        parse_err("rabbit://user:Sw0r,df1sh@host/"),
        UrlError::MalformedHostEntry { position: 1 }
    );
    assert_eq!(
        parse_err("rabbit://user:Sw0r/df1sh@host/"),
        UrlError::MalformedHostEntry { position: 1 }
    );
}

#[test]
fn odd_inputs_never_panic() {
    let fixed = [
        "",
        "://",
        ":",
        "rabbit:",
        "rabbit:/",
        "rabbit://@",
        "rabbit://:@:",
        "rabbit://@@@",
        "rabbit://[",
        "rabbit://]",
        "rabbit://[]",
        "rabbit://[:",
        "rabbit://[::1]:",
        "rabbit://[::1]:99999",
        "rabbit://%",
        "rabbit://%%%/%?%=%&%",
        "rabbit://é:€@ü:1/ß?ö=ä",
        "rabbit://\u{0}\u{7f}/\u{0}",
        "rabbit://h:\u{663}/",
        "rabbit://h/?&&&===",
        "rabbit://h/?=",
        "rabbit://,,,,",
        "\u{1F600}://",
        "rabbit\u{1F600}://h",
        "rabbit://h#",
        "rabbit://#?/",
        "memory://:",
    ];
    for text in fixed {
        check_no_panic(text);
    }

    // Deterministic pseudo-random concatenations of awkward pieces.
    let prefixes = [
        "rabbit://",
        "memory://",
        "kombu://",
        "",
        "rabbit:",
        "x://",
        " RABBIT://",
    ];
    let pieces = [
        "a",
        "h",
        "user",
        ":",
        "@",
        ",",
        "/",
        "?",
        "#",
        "&",
        "=",
        "+",
        "%",
        "%2",
        "%41",
        "%FF",
        "%2F",
        "%25",
        "[",
        "]",
        "::1",
        "fe80::1%25e",
        "5672",
        "0",
        "65536",
        " ",
        "\t",
        "\n",
        "é",
        "€",
        "\u{0}",
        "[::1]",
        "//",
        "..",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % (bound as u64)).unwrap_or(0)
    };
    for _ in 0..20_000 {
        let mut text = String::from(prefixes[next(prefixes.len())]);
        for _ in 0..next(12) {
            text.push_str(pieces[next(pieces.len())]);
        }
        check_no_panic(&text);
    }
}

/// Parses `text`; when it parses, formats it and checks that the display
/// parses back to the same URL apart from the masked passwords.
fn check_no_panic(text: &str) {
    match TransportUrl::parse(text) {
        Ok(url) => {
            let shown = url.to_string();
            let _ = format!("{url:?}");
            match TransportUrl::parse(&shown) {
                Ok(again) => assert_same_except_passwords(&url, &again),
                Err(error) => panic!("{text:?} displayed as {shown:?} which fails: {error}"),
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}
