//! The Python-visible class name of a typed application error: the variant's name for an enum
//! with serde's default (externally tagged) or untagged-unit representation, the type's name
//! for a struct or an internally or adjacently tagged enum (serde serializes those variants as
//! a struct named after the enum), or else the last segment of the Rust type name.
//!
//! serde hands the names to the serializer, so a serializer that records the first name it is
//! given and stops finds them without any trait for users to implement.

use std::fmt;

use serde::ser::{self, Impossible, Serialize, Serializer};

/// The class name under which `value` is reported to callers.
pub(crate) fn class_name<E: Serialize + ?Sized>(value: &E) -> String {
    match value.serialize(NameCapture) {
        Err(Found(Some(name))) => name.to_owned(),
        _ => short_type_name(std::any::type_name::<E>()),
    }
}

/// `alloc::string::String` -> `String`, `my::Wrapper<a::B>` -> `Wrapper`.
fn short_type_name(full: &str) -> String {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

/// Stops serialization as soon as a name is known (`None`: a value without one).
#[derive(Debug)]
struct Found(Option<&'static str>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("name found")
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Found(None)
    }
}

struct NameCapture;

macro_rules! nameless {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            Err(Found(None))
        })*
    };
}

impl Serializer for NameCapture {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Impossible<(), Found>;
    type SerializeTuple = Impossible<(), Found>;
    type SerializeTupleStruct = Impossible<(), Found>;
    type SerializeTupleVariant = Impossible<(), Found>;
    type SerializeMap = Impossible<(), Found>;
    type SerializeStruct = Impossible<(), Found>;
    type SerializeStructVariant = Impossible<(), Found>;

    nameless!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Found> {
        Err(Found(None))
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Found> {
        Err(Found(Some(name)))
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Found> {
        Err(Found(Some(variant)))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Some(name)))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Some(variant)))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        Err(Found(None))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        Err(Found(None))
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found(Some(name)))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found(Some(variant)))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        Err(Found(None))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Found> {
        Err(Found(Some(name)))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found(Some(variant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    enum CalcError {
        DivisionByZero,
        Overflow(u32),
        Domain { what: String },
        Pair(u8, u8),
    }

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        Busy { retry_after: u32 },
    }

    #[derive(Serialize)]
    struct QuotaExceeded {
        limit: u32,
    }

    #[derive(Serialize)]
    struct Wrapped(String);

    #[test]
    fn enum_variants_give_their_own_names() {
        assert_eq!(class_name(&CalcError::DivisionByZero), "DivisionByZero");
        assert_eq!(class_name(&CalcError::Overflow(1)), "Overflow");
        assert_eq!(
            class_name(&CalcError::Domain { what: "x".into() }),
            "Domain"
        );
        assert_eq!(class_name(&CalcError::Pair(1, 2)), "Pair");
    }

    #[test]
    fn internally_tagged_enums_give_the_enum_name() {
        assert_eq!(class_name(&Tagged::Busy { retry_after: 1 }), "Tagged");
    }

    #[test]
    fn structs_give_their_type_name_and_others_their_rust_type() {
        assert_eq!(class_name(&QuotaExceeded { limit: 3 }), "QuotaExceeded");
        assert_eq!(class_name(&Wrapped("w".into())), "Wrapped");
        assert_eq!(class_name(&"plain".to_owned()), "String");
        assert_eq!(class_name(&vec![1u8]), "Vec");
    }
}
