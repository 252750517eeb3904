//! Object keys matched without allocating: each decoder names the keys it knows, every
//! other key is skipped.

use serde::Deserialize;
use serde::de::{self, Visitor};

/// A set of object keys recognized without allocating.
pub(crate) trait KnownKeys: Sized {
    /// The known key `key` is, if any.
    fn from_key(key: &str) -> Option<Self>;
}

/// An object key: `Some` known key, or `None` for any other; never allocates.
pub(crate) struct Key<K>(pub(crate) Option<K>);

impl<'de, K: KnownKeys> Deserialize<'de> for Key<K> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<K>(std::marker::PhantomData<K>);
        impl<K: KnownKeys> Visitor<'_> for KeyVisitor<K> {
            type Value = Key<K>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<K>, E> {
                Ok(Key(K::from_key(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}
