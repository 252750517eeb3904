//! oslo's `NotificationFilter` (`notify/filter.py`): regular expressions on a notification's
//! publisher id, event type, and top-level keys of its context, metadata and payload.

use regex::Regex;
use serde_json::{Map, Value};

use super::endpoint::Incoming;

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field} filter pattern: {source}")]
#[non_exhaustive]
pub struct FilterError {
    /// The field the pattern was for: `publisher_id`, `event_type`, or `context.<key>`,
    /// `metadata.<key>`, `payload.<key>`.
    pub field: String,
    /// Why it does not compile.
    #[source]
    pub source: regex::Error,
}

/// Which notifications an endpoint sees: every pattern given must match, as oslo's
/// `NotificationFilter` has it.
///
/// Each pattern matches as Python's `re.match` does: anchored at the start of the text, not
/// at its end (`"^compute"` and `"compute"` mean the same; add `$` for the whole text). A
/// field that is absent, `null` or not a string matches no pattern; a context, metadata or
/// payload key that is absent does not match; a payload that is not a JSON object matches no
/// payload pattern.
///
/// Patterns use the [`regex`] crate's syntax, which is Python's `re` for everyday patterns
/// (classes, alternation, repetition, groups, `(?i)` flags, `\d`, `\w`, `\s`, Unicode by
/// default) but has no look-around (`(?=...)`, `(?!...)`, `(?<=...)`), no back-references
/// (`\1`), no possessive or atomic groups, and no `\Z`: write `\z` or `$`. Python's `$` also
/// matches before a final newline, the crate's only at the very end. A pattern using what the
/// crate lacks is a [`FilterError`] when the filter is built, never a silent mismatch.
///
/// ```
/// use amqp_rpc::notify::NotificationFilter;
/// let filter = NotificationFilter::new()
///     .publisher_id("^compute.*")?
///     .event_type(r"compute\.instance\.(create|delete)\.end")?
///     .context("project_id", "^p1$")?
///     .payload("state", "active")?;
/// # Ok::<(), amqp_rpc::notify::FilterError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    publisher_id: Option<Regex>,
    event_type: Option<Regex>,
    context: Vec<(String, Regex)>,
    metadata: Vec<(String, Regex)>,
    payload: Vec<(String, Regex)>,
}

/// `pattern` anchored at the start only, as `re.match` applies it.
fn compile(field: impl Into<String>, pattern: &str) -> Result<Regex, FilterError> {
    // Checked alone first, so that a pattern such as `a)|(b` cannot escape the group.
    Regex::new(pattern)
        .and_then(|_| Regex::new(&format!(r"\A(?:{pattern})")))
        .map_err(|source| FilterError {
            field: field.into(),
            source,
        })
}

/// Whether `regex` matches `value` as oslo's `_check_for_single_mismatch` has it.
fn matches(regex: &Regex, value: Option<&Value>) -> bool {
    match value {
        Some(Value::String(text)) => regex.is_match(text),
        _ => false,
    }
}

/// Whether every `(key, regex)` matches the value of `key` in `map`.
fn all_match(patterns: &[(String, Regex)], map: Option<&Map<String, Value>>) -> bool {
    patterns
        .iter()
        .all(|(key, regex)| matches(regex, map.and_then(|m| m.get(key))))
}

impl NotificationFilter {
    /// A filter that lets everything through.
    pub fn new() -> NotificationFilter {
        NotificationFilter::default()
    }

    /// Requires the publisher id to match `pattern`.
    pub fn publisher_id(mut self, pattern: &str) -> Result<Self, FilterError> {
        self.publisher_id = Some(compile("publisher_id", pattern)?);
        Ok(self)
    }

    /// Requires the event type to match `pattern`.
    pub fn event_type(mut self, pattern: &str) -> Result<Self, FilterError> {
        self.event_type = Some(compile("event_type", pattern)?);
        Ok(self)
    }

    /// Requires the context's key `key` to be a string matching `pattern`.
    pub fn context(mut self, key: &str, pattern: &str) -> Result<Self, FilterError> {
        let regex = compile(format!("context.{key}"), pattern)?;
        self.context.push((key.to_owned(), regex));
        Ok(self)
    }

    /// Requires metadata key `key` (`message_id` or `timestamp`) to be a string matching
    /// `pattern`.
    pub fn metadata(mut self, key: &str, pattern: &str) -> Result<Self, FilterError> {
        let regex = compile(format!("metadata.{key}"), pattern)?;
        self.metadata.push((key.to_owned(), regex));
        Ok(self)
    }

    /// Requires the payload to be an object whose top-level key `key` is a string matching
    /// `pattern`.
    pub fn payload(mut self, key: &str, pattern: &str) -> Result<Self, FilterError> {
        let regex = compile(format!("payload.{key}"), pattern)?;
        self.payload.push((key.to_owned(), regex));
        Ok(self)
    }

    /// Whether `notification` passes.
    pub fn matches(&self, notification: &Incoming) -> bool {
        let text = |value: &Option<String>| value.clone().map(Value::String);
        if let Some(regex) = &self.publisher_id
            && !matches(regex, text(&notification.publisher_id).as_ref())
        {
            return false;
        }
        if let Some(regex) = &self.event_type
            && !matches(regex, text(&notification.event_type).as_ref())
        {
            return false;
        }
        if !all_match(&self.context, Some(notification.context.as_map())) {
            return false;
        }
        if !self.metadata.is_empty() {
            let metadata = notification.metadata.to_map();
            if !all_match(&self.metadata, Some(&metadata)) {
                return false;
            }
        }
        all_match(&self.payload, notification.payload.as_object())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::notify::{Metadata, Priority};
    use serde_json::json;

    fn incoming(payload: Value) -> Incoming {
        Incoming {
            context: Context::new()
                .with("project_id", "p1")
                .with("roles", json!(["a"])),
            publisher_id: Some("compute.host1".to_owned()),
            event_type: Some("compute.instance.create.end".to_owned()),
            priority: Priority::Info,
            payload,
            metadata: Metadata {
                message_id: Some("0f5d053f-e187-4fcd-9ade-0b4584c9c121".to_owned()),
                timestamp: Some("2026-11-21 13:17:53.278295".to_owned()),
            },
        }
    }

    fn passes(filter: Result<NotificationFilter, FilterError>, payload: Value) -> bool {
        filter
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&incoming(payload))
    }

    #[test]
    fn patterns_are_anchored_at_the_start_only_as_re_match() {
        let f = || NotificationFilter::new();
        assert!(passes(f().publisher_id("compute"), json!({})));
        assert!(passes(f().publisher_id("^compute"), json!({})));
        assert!(
            !passes(f().publisher_id("host1"), json!({})),
            "re.match does not search"
        );
        assert!(passes(f().publisher_id(".*host1"), json!({})));
        assert!(!passes(f().publisher_id("compute$"), json!({})));
        assert!(passes(f().event_type(r"compute\.instance\..*"), json!({})));
        // ceilometer's alternation of prefixes: each alternative is anchored.
        assert!(passes(
            f().event_type("image.update|compute.instance"),
            json!({})
        ));
        assert!(!passes(f().event_type("image.update|instance"), json!({})));
        assert!(passes(f().event_type("(?i)COMPUTE"), json!({})));
        assert!(passes(f().metadata("timestamp", "2026-11"), json!({})));
        assert!(!passes(f().metadata("timestamp", "Aug"), json!({})));
    }

    #[test]
    fn missing_keys_and_non_strings_never_match() {
        let f = || NotificationFilter::new();
        assert!(passes(f().context("project_id", "p1"), json!({})));
        assert!(
            !passes(f().context("tenant", ".*"), json!({})),
            "absent key"
        );
        assert!(!passes(f().context("roles", ".*"), json!({})), "a list");
        assert!(passes(
            f().payload("state", "^active$"),
            json!({"state": "active"})
        ));
        assert!(!passes(f().payload("state", ".*"), json!({"state": 1})));
        assert!(!passes(f().payload("state", ".*"), json!({"other": "x"})));
        assert!(
            !passes(f().payload("state", ".*"), json!("state")),
            "not an object"
        );
        assert!(!passes(f().payload("state", ".*"), Value::Null));
        let mut no_publisher = incoming(json!({}));
        no_publisher.publisher_id = None;
        let filter = f().publisher_id(".*").unwrap_or_else(|e| panic!("{e}"));
        assert!(!filter.matches(&no_publisher), "None is not a string");
        assert!(NotificationFilter::new().matches(&no_publisher));
    }

    #[test]
    fn every_pattern_must_match() {
        let filter = NotificationFilter::new()
            .publisher_id("compute")
            .and_then(|f| f.payload("state", "active"));
        assert!(passes(filter, json!({"state": "active"})));
        let filter = NotificationFilter::new()
            .publisher_id("network")
            .and_then(|f| f.payload("state", "active"));
        assert!(!passes(filter, json!({"state": "active"})));
    }

    #[test]
    fn python_only_syntax_is_an_error_naming_the_field() {
        for pattern in [r"(?=a)", r"(a)\1", r"a\Z", "(", "a)|(b"] {
            let err = NotificationFilter::new().context("user", pattern);
            let err = err.err().unwrap_or_else(|| panic!("{pattern} compiled"));
            assert_eq!(err.field, "context.user");
        }
    }
}
