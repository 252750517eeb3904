//! The request context: a JSON object travelling beside every request.
//!
//! On the wire each key `k` becomes a top-level `_context_k` of the request (see
//! [`crate::wire`]); a receiving server also finds `client_timeout`, as Python's does.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The request context of a call, cast or notification, as a JSON object.
///
/// Any key may be set; the helpers cover the keys oslo.context uses.
///
/// ```
/// use amqp_rpc::Context;
/// let ctx = Context::new()
///     .with_request_id("req-42")
///     .with_user_id("alice")
///     .with_roles(["admin", "reader"]);
/// assert_eq!(ctx.request_id(), Some("req-42"));
/// assert_eq!(ctx.roles(), vec!["admin", "reader"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Context(Map<String, Value>);

impl Context {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Context::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The value of `key` when it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// Sets `key` to `value` (builder form of [`Context::insert`]).
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The context as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The context as a JSON object.
    #[must_use]
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// `request_id`: the id that ties log lines of one request together (`req-<uuid>` in
    /// OpenStack).
    pub fn request_id(&self) -> Option<&str> {
        self.get_str("request_id")
    }

    /// Sets `request_id`.
    #[must_use]
    pub fn with_request_id(self, id: impl Into<String>) -> Self {
        self.with("request_id", id.into())
    }

    /// `global_request_id`: the request id of the originating service.
    pub fn global_request_id(&self) -> Option<&str> {
        self.get_str("global_request_id")
    }

    /// `user_id` (oslo.context also sends it as `user`).
    pub fn user_id(&self) -> Option<&str> {
        self.get_str("user_id").or_else(|| self.get_str("user"))
    }

    /// Sets `user_id`.
    #[must_use]
    pub fn with_user_id(self, id: impl Into<String>) -> Self {
        self.with("user_id", id.into())
    }

    /// `project_id` (oslo.context also sends it as `project_id` and `tenant`).
    pub fn project_id(&self) -> Option<&str> {
        self.get_str("project_id")
            .or_else(|| self.get_str("tenant"))
    }

    /// Sets `project_id`.
    #[must_use]
    pub fn with_project_id(self, id: impl Into<String>) -> Self {
        self.with("project_id", id.into())
    }

    /// `roles`: the string entries of the `roles` list (empty when absent).
    pub fn roles(&self) -> Vec<&str> {
        match self.get("roles") {
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Sets `roles`.
    #[must_use]
    pub fn with_roles<I, S>(self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Vec<Value> = roles.into_iter().map(|r| Value::String(r.into())).collect();
        self.with("roles", roles)
    }

    /// `is_admin`, `false` when absent or not a boolean.
    pub fn is_admin(&self) -> bool {
        self.get("is_admin")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// `client_timeout` on a received request: the caller's call-monitor timeout in seconds
    /// (oslo adds this key on receipt; `None` when the caller set none).
    pub fn client_timeout(&self) -> Option<f64> {
        self.get("client_timeout").and_then(Value::as_f64)
    }
}

impl From<Map<String, Value>> for Context {
    fn from(map: Map<String, Value>) -> Self {
        Context(map)
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Context {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Context(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helpers_read_oslo_context_aliases() {
        let ctx: Context = [("user", json!("u1")), ("tenant", json!("p1"))]
            .into_iter()
            .collect();
        assert_eq!(ctx.user_id(), Some("u1"));
        assert_eq!(ctx.project_id(), Some("p1"));
        assert_eq!(ctx.request_id(), None);
        assert!(!ctx.is_admin());
    }

    #[test]
    fn roles_ignore_non_strings() {
        let ctx = Context::new().with("roles", json!(["a", 1, "b"]));
        assert_eq!(ctx.roles(), vec!["a", "b"]);
    }

    #[test]
    fn serializes_as_a_plain_object() {
        let ctx = Context::new().with_request_id("r").with("n", 3);
        assert_eq!(
            serde_json::to_value(&ctx).ok(),
            Some(json!({"request_id": "r", "n": 3}))
        );
    }
}
