//! An oslo service's own configuration file (`nova.conf`, ...), read as oslo.config reads it,
//! for the options that decide how a service connects: `[DEFAULT] transport_url` and
//! `control_exchange`, and the `[oslo_messaging_rabbit]` options.
//!
//! The syntax is oslo.config's `iniparser`, not a general INI dialect, so it is written here
//! rather than taken from an INI crate: `key = value` or `key: value` (the first of `=` and
//! `:`), one pair of matching quotes around a value removed, `#` and `;` comment lines, values
//! continued on indented lines (joined with newlines), a blank line ending a value, and a
//! repeated key keeping its last value. Values then get oslo.config's substitution: `$name`
//! or `${name}` is the value of option `name` of the same section or of `[DEFAULT]`, and `$$`
//! is a `$`. Section names other than `DEFAULT` are case-insensitive, as oslo.config makes
//! group names lower case.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What went wrong reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not valid oslo.config syntax.
    #[error("{path}: at line {line}, {message}: {text:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// oslo.config's message for it.
        message: &'static str,
        /// The line.
        text: String,
    },
    /// A `$name` that names no option (oslo.config's `TemplateSubstitutionError`).
    #[error("{path}: [{section}] {key}: cannot substitute ${name}: no such option")]
    Substitution {
        /// The file.
        path: PathBuf,
        /// The section of the value.
        section: String,
        /// The option whose value holds it.
        key: String,
        /// The name referred to.
        name: String,
    },
}

/// The options of one file: section, then key, then raw value (before substitution).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OsloConf {
    path: PathBuf,
    sections: HashMap<String, HashMap<String, String>>,
}

/// oslo.config's group name: `DEFAULT` as it is, others in lower case.
fn group_name(section: &str) -> String {
    match section {
        "DEFAULT" => section.to_owned(),
        other => other.to_lowercase(),
    }
}

impl OsloConf {
    /// Reads and parses `path`.
    pub(crate) fn read(path: &Path) -> Result<OsloConf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.to_owned(),
            source,
        })?;
        OsloConf::parse(path, &text)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    pub(crate) fn parse(path: &Path, text: &str) -> Result<OsloConf, ConfError> {
        let mut conf = OsloConf {
            path: path.to_owned(),
            sections: HashMap::new(),
        };
        let error = |line: usize, message: &'static str, text: &str| ConfError::Parse {
            path: path.to_owned(),
            line,
            message,
            text: text.to_owned(),
        };
        // Assignments before any section header go nowhere in oslo.config (it has no
        // section to put them in); they are kept under "" and never read.
        let mut section = String::new();
        let mut pending: Option<(String, Vec<String>)> = None;
        let flush =
            |conf: &mut OsloConf, section: &str, pending: &mut Option<(String, Vec<String>)>| {
                if let Some((key, lines)) = pending.take() {
                    conf.sections
                        .entry(section.to_owned())
                        .or_default()
                        .insert(key, lines.join("\n"));
                }
            };
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim_end();
            if line.is_empty() {
                flush(&mut conf, &section, &mut pending);
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match &mut pending {
                    Some((_, lines)) => lines.push(line.trim_start().to_owned()),
                    None => return Err(error(number, "Unexpected continuation line", line)),
                }
                continue;
            }
            flush(&mut conf, &section, &mut pending);
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    return Err(error(number, "Invalid section (must end with ])", line));
                }
                if line.len() <= 2 {
                    return Err(error(number, "Empty section name", line));
                }
                section = group_name(&line[1..line.len() - 1]);
                conf.sections.entry(section.clone()).or_default();
            } else if line.starts_with(['#', ';']) {
                continue;
            } else {
                let colon = line.find(':');
                let equal = line.find('=');
                let at = match (equal, colon) {
                    (None, None) => {
                        return Err(error(number, "No ':' or '=' found in assignment", line));
                    }
                    (Some(e), Some(c)) => e.min(c),
                    (Some(at), None) | (None, Some(at)) => at,
                };
                let key = line[..at].trim();
                if key.is_empty() {
                    return Err(error(number, "Key cannot be empty", line));
                }
                let mut value = line[at + 1..].trim();
                if value.len() >= 2
                    && (value.starts_with('"') || value.starts_with('\''))
                    && value.ends_with(&value[..1])
                {
                    value = &value[1..value.len() - 1];
                }
                pending = Some((key.to_owned(), vec![value.to_owned()]));
            }
        }
        flush(&mut conf, &section, &mut pending);
        Ok(conf)
    }

    /// The value of `key` in `section`, its `$` references substituted; `None` if not set.
    pub(crate) fn get(&self, section: &str, key: &str) -> Result<Option<String>, ConfError> {
        let section = group_name(section);
        match self.raw(&section, key) {
            Some(raw) => self.substitute(&section, key, raw, 0).map(Some),
            None => Ok(None),
        }
    }

    /// The keys of `section`, sorted.
    pub(crate) fn keys(&self, section: &str) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .sections
            .get(&group_name(section))
            .map(|s| s.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    fn raw(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }

    /// oslo.config's `_substitute`: `$$` is `$`; `$name` and `${name}` are option `name` of the
    /// same section, else of `[DEFAULT]`.
    fn substitute(
        &self,
        section: &str,
        key: &str,
        raw: &str,
        depth: usize,
    ) -> Result<String, ConfError> {
        let unknown = |name: &str| ConfError::Substitution {
            path: self.path.clone(),
            section: section.to_owned(),
            key: key.to_owned(),
            name: name.to_owned(),
        };
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let (name, tail) = match after.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) => (&braced[..end], &braced[end + 1..]),
                    None => return Err(unknown(braced)),
                },
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            if name.is_empty() {
                // A lone `$` (Python's Template leaves it to a ValueError; kept as it is).
                out.push('$');
                rest = after;
                continue;
            }
            let (found_in, value) = match self.raw(section, name) {
                Some(value) => (section, value),
                None => match self.raw("DEFAULT", name) {
                    Some(value) => ("DEFAULT", value),
                    None => return Err(unknown(name)),
                },
            };
            // A reference loop would never end; oslo.config fails on it too.
            if depth > 16 {
                return Err(unknown(name));
            }
            out.push_str(&self.substitute(found_in, name, value, depth + 1)?);
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> OsloConf {
        OsloConf::parse(Path::new("test.conf"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get(conf: &OsloConf, section: &str, key: &str) -> Option<String> {
        conf.get(section, key).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_a_nova_conf_as_oslo_config_does() {
        let conf = parse(
            "# nova.conf\n\
             [DEFAULT]\n\
             transport_url = rabbit://nova:s3cret@10.0.0.5:5672/\n\
             control_exchange: nova\n\
             state_path=/var/lib/nova\n\
             \n\
             [oslo_messaging_rabbit]\n\
             ; a comment\n\
             amqp_durable_queues = 'true'\n\
             rabbit_qos_prefetch_count = \"10\"\n\
             heartbeat_timeout_threshold = 30\n\
             heartbeat_timeout_threshold = 60\n\
             [Oslo_Messaging_Notifications]\n\
             driver = messagingv2\n",
        );
        assert_eq!(
            get(&conf, "DEFAULT", "transport_url").as_deref(),
            Some("rabbit://nova:s3cret@10.0.0.5:5672/")
        );
        assert_eq!(
            get(&conf, "DEFAULT", "control_exchange").as_deref(),
            Some("nova")
        );
        assert_eq!(
            get(&conf, "oslo_messaging_rabbit", "amqp_durable_queues").as_deref(),
            Some("true")
        );
        assert_eq!(
            get(&conf, "oslo_messaging_rabbit", "rabbit_qos_prefetch_count").as_deref(),
            Some("10")
        );
        // The last of a repeated key.
        assert_eq!(
            get(
                &conf,
                "oslo_messaging_rabbit",
                "heartbeat_timeout_threshold"
            )
            .as_deref(),
            Some("60")
        );
        // Group names are lower case.
        assert_eq!(
            get(&conf, "oslo_messaging_notifications", "driver").as_deref(),
            Some("messagingv2")
        );
        assert_eq!(get(&conf, "DEFAULT", "missing"), None);
        assert_eq!(
            conf.keys("oslo_messaging_rabbit"),
            [
                "amqp_durable_queues",
                "heartbeat_timeout_threshold",
                "rabbit_qos_prefetch_count"
            ]
        );
    }

    #[test]
    fn continuation_lines_quotes_and_separators() {
        let conf = parse(
            "[DEFAULT]\n\
             multi = first\n  \
             second\n\
             \tthird\n\
             \n\
             url = a=b:c\n\
             colon: x=y\n\
             quoted = \"'kept'\"\n\
             half = \"open\n",
        );
        assert_eq!(
            get(&conf, "DEFAULT", "multi").as_deref(),
            Some("first\nsecond\nthird")
        );
        // The first of '=' and ':' splits.
        assert_eq!(get(&conf, "DEFAULT", "url").as_deref(), Some("a=b:c"));
        assert_eq!(get(&conf, "DEFAULT", "colon").as_deref(), Some("x=y"));
        // One pair of quotes only, and only a matching pair.
        assert_eq!(get(&conf, "DEFAULT", "quoted").as_deref(), Some("'kept'"));
        assert_eq!(get(&conf, "DEFAULT", "half").as_deref(), Some("\"open"));
    }

    #[test]
    fn substitutes_dollar_references() {
        let conf = parse(
            "[DEFAULT]\n\
             rabbit_host = 10.0.0.5\n\
             password = p$$ss\n\
             transport_url = rabbit://nova:$password@${rabbit_host}:5672/\n\
             broken = $nowhere\n\
             [oslo_messaging_rabbit]\n\
             ssl_ca_file = $state/ca.pem\n\
             state = /etc/ssl\n",
        );
        assert_eq!(
            get(&conf, "DEFAULT", "transport_url").as_deref(),
            Some("rabbit://nova:p$ss@10.0.0.5:5672/")
        );
        assert_eq!(
            get(&conf, "oslo_messaging_rabbit", "ssl_ca_file").as_deref(),
            Some("/etc/ssl/ca.pem")
        );
        let err = conf.get("DEFAULT", "broken").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("test.conf: [DEFAULT] broken: cannot substitute $nowhere: no such option")
        );
    }

    #[test]
    fn syntax_errors_name_the_line_as_oslo_config_does() {
        for (text, message, line) in [
            ("  indented = 1\n", "Unexpected continuation line", 1),
            (
                "[DEFAULT]\nno separator\n",
                "No ':' or '=' found in assignment",
                2,
            ),
            ("[DEFAULT]\n= 1\n", "Key cannot be empty", 2),
            ("[DEFAULT\n", "Invalid section (must end with ])", 1),
            ("[]\n", "Empty section name", 1),
        ] {
            match OsloConf::parse(Path::new("x.conf"), text) {
                Err(ConfError::Parse {
                    message: m,
                    line: l,
                    ..
                }) => assert_eq!((m, l), (message, line), "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
