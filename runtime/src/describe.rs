//! Servers that describe themselves: their endpoints' namespaces, versions and methods, with
//! argument names and types as JSON Schema, which none of the peers offer over AMQP.
//!
//! A server built with [`ServerBuilder::describe`](crate::ServerBuilder::describe) answers
//! [`DESCRIBE_METHOD`] (no namespace, version 1.0, as oslo's ping) with
//! `{"endpoints": [...]}`, one object per endpoint: `namespace`, `version`, and for an
//! endpoint made by `#[rpc_endpoint]`, `trait` and `methods`, each with `name`, `since`,
//! `cast`, `doc`, `params` (a JSON Schema of the keyword arguments object) and `returns` (the
//! result's schema; absent for a cast). The `amqp-rpc describe` command prints it.
//!
//! A type's schema comes from [`TypeSchema`], implemented here for the standard types serde
//! maps to JSON; any other type (your structs and enums) is described by its Rust name alone,
//! `{"x-rust-type": "my_crate::Flavor"}`, unless you implement [`TypeSchema`] for it.
//!
//! ```
//! use amqp_rpc::describe::TypeSchema;
//! use serde_json::json;
//! assert_eq!(<Option<Vec<u8>>>::schema(), json!({"anyOf": [
//!     {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
//!     {"type": "null"}
//! ]}));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde_json::{Map, Value, json};

/// The method of a describing server's description endpoint.
pub const DESCRIBE_METHOD: &str = "amqp_rpc_describe";

/// A Rust type's JSON Schema, as serde writes the type to JSON.
///
/// Implement it for a type of yours to have `describe` show its structure; without it the type
/// appears by name.
pub trait TypeSchema {
    /// The schema.
    fn schema() -> Value;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl TypeSchema for $t {
            fn schema() -> Value {
                json!({"type": "integer", "minimum": <$t>::MIN, "maximum": <$t>::MAX})
            }
        }
    )*};
}

integer!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

macro_rules! simple {
    ($($t:ty => $json:expr),* $(,)?) => {$(
        impl TypeSchema for $t {
            fn schema() -> Value {
                $json
            }
        }
    )*};
}

simple! {
    // Beyond 64 bits JSON holds them, but not every peer reads them exactly.
    i128 => json!({"type": "integer"}),
    u128 => json!({"type": "integer", "minimum": 0}),
    f32 => json!({"type": "number"}),
    f64 => json!({"type": "number"}),
    bool => json!({"type": "boolean"}),
    char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
    String => json!({"type": "string"}),
    str => json!({"type": "string"}),
    () => json!({"type": "null"}),
    // Any JSON.
    Value => json!({}),
    Map<String, Value> => json!({"type": "object"}),
}

impl<T: TypeSchema + ?Sized> TypeSchema for &T {
    fn schema() -> Value {
        T::schema()
    }
}

impl<T: TypeSchema + ?Sized> TypeSchema for Box<T> {
    fn schema() -> Value {
        T::schema()
    }
}

impl<T: TypeSchema + ?Sized> TypeSchema for std::sync::Arc<T> {
    fn schema() -> Value {
        T::schema()
    }
}

impl<T: TypeSchema + ToOwned + ?Sized> TypeSchema for std::borrow::Cow<'_, T> {
    fn schema() -> Value {
        T::schema()
    }
}

impl<T: TypeSchema> TypeSchema for Option<T> {
    fn schema() -> Value {
        json!({"anyOf": [T::schema(), {"type": "null"}]})
    }
}

fn array<T: TypeSchema>() -> Value {
    json!({"type": "array", "items": T::schema()})
}

fn unique_array<T: TypeSchema>() -> Value {
    json!({"type": "array", "items": T::schema(), "uniqueItems": true})
}

impl<T: TypeSchema> TypeSchema for Vec<T> {
    fn schema() -> Value {
        array::<T>()
    }
}

impl<T: TypeSchema> TypeSchema for [T] {
    fn schema() -> Value {
        array::<T>()
    }
}

impl<T: TypeSchema> TypeSchema for VecDeque<T> {
    fn schema() -> Value {
        array::<T>()
    }
}

impl<T: TypeSchema, S> TypeSchema for HashSet<T, S> {
    fn schema() -> Value {
        unique_array::<T>()
    }
}

impl<T: TypeSchema> TypeSchema for BTreeSet<T> {
    fn schema() -> Value {
        unique_array::<T>()
    }
}

impl<T: TypeSchema, const N: usize> TypeSchema for [T; N] {
    fn schema() -> Value {
        json!({"type": "array", "items": T::schema(), "minItems": N, "maxItems": N})
    }
}

impl<V: TypeSchema, S> TypeSchema for HashMap<String, V, S> {
    fn schema() -> Value {
        json!({"type": "object", "additionalProperties": V::schema()})
    }
}

impl<V: TypeSchema> TypeSchema for BTreeMap<String, V> {
    fn schema() -> Value {
        json!({"type": "object", "additionalProperties": V::schema()})
    }
}

macro_rules! tuple {
    ($(($($t:ident),+)),*) => {$(
        impl<$($t: TypeSchema),+> TypeSchema for ($($t,)+) {
            fn schema() -> Value {
                let items = vec![$($t::schema()),+];
                let n = items.len();
                json!({"type": "array", "prefixItems": items, "minItems": n, "maxItems": n})
            }
        }
    )*};
}

tuple!((A), (A, B), (A, B, C), (A, B, C, D));

/// The description endpoint: answers [`DESCRIBE_METHOD`] with the descriptions it was given.
pub(crate) struct DescribeEndpoint {
    pub(crate) description: Value,
}

#[async_trait::async_trait]
impl crate::Endpoint for DescribeEndpoint {
    fn has_method(&self, method: &str) -> bool {
        method == DESCRIBE_METHOD
    }

    async fn dispatch(
        &self,
        _ctx: crate::Context,
        _method: &str,
        _args: Map<String, Value>,
    ) -> Result<crate::Returned, crate::RemoteError> {
        Ok(self.description.clone().into())
    }
}

/// The description of a server with `endpoints`: one object each, in order.
pub(crate) fn describe(endpoints: &[std::sync::Arc<dyn crate::Endpoint>]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|endpoint| {
            let mut described = match endpoint.description() {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            described.insert("namespace".into(), endpoint.namespace().into());
            described.insert("version".into(), endpoint.version().to_string().into());
            described.entry("methods").or_insert(Value::Null);
            Value::Object(described)
        })
        .collect();
    json!({"endpoints": endpoints})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_types_have_serdes_json_shape() {
        assert_eq!(
            u8::schema(),
            json!({"type": "integer", "minimum": 0, "maximum": 255})
        );
        assert_eq!(<&str>::schema(), json!({"type": "string"}));
        assert_eq!(
            <HashMap<String, f64>>::schema(),
            json!({"type": "object", "additionalProperties": {"type": "number"}})
        );
        assert_eq!(
            <(bool, String)>::schema(),
            json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "string"}],
                   "minItems": 2, "maxItems": 2})
        );
        assert_eq!(Value::schema(), json!({}));
    }
}
