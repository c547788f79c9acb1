//! One JSON object of an input form, read without building Python objects: the fields the
//! forms use as raw JSON text, and every other value checked as strictly as orjson checks it
//! (numbers in range, escapes valid), so that a record read here is one orjson reads too.

use crate::fields::{field_index, Fields, Value, DATA, N_FIELDS};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON object's known fields as raw JSON text (None: absent; a null is Some("null")),
/// and its `data`, which must be an object (else the document is not read here).
pub struct JsonDoc<'a> {
    fields: [Option<&'a RawValue>; N_FIELDS],
    pub data: Option<Box<JsonDoc<'a>>>,
}

impl<'a> JsonDoc<'a> {
    /// The object `text` holds; None if it is not one, or not as orjson would read it, or
    /// if it names a known field twice (orjson keeps the last: the Python path decides).
    pub fn parse(text: &'a str) -> Option<JsonDoc<'a>> {
        serde_json::from_str(text).ok()
    }

    pub fn raw(&self, index: usize) -> Option<&'a str> {
        self.fields[index].map(RawValue::get)
    }
}

impl<'a> Fields<'a> for JsonDoc<'a> {
    fn value(&self, index: usize) -> Value<'a> {
        match self.raw(index) {
            None => Value::Absent,
            Some("null") => Value::Null,
            Some(raw) => match plain_str(raw) {
                Some(text) => Value::Str(Cow::Borrowed(text)),
                None => Value::Other(raw),
            },
        }
    }
}

/// The objects of a top-level JSON array (None if any item is not an object).
pub fn array_docs(text: &str) -> Option<Vec<JsonDoc<'_>>> {
    serde_json::from_str(text).ok()
}

/// A raw JSON value as a string, if it is a string without escapes (anything else: None).
fn plain_str(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

impl<'de> Deserialize<'de> for JsonDoc<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = JsonDoc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonDoc<'de>, A::Error> {
        let mut doc = JsonDoc {
            fields: [None; N_FIELDS],
            data: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let Some(index) = key else {
                map.next_value::<Strict>()?;
                continue;
            };
            if doc.fields[index].is_some() || (index == DATA && doc.data.is_some()) {
                return Err(de::Error::custom("a known field twice"));
            }
            if index == DATA {
                doc.data = Some(Box::new(map.next_value()?));
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            check(raw.get()).map_err(de::Error::custom)?;
            doc.fields[index] = Some(raw);
        }
        Ok(doc)
    }
}

/// A key, decoded (escapes included), as the index of a known field.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(field_index(key))
    }
}

/// serde_json skips a raw value without checking its numbers' range or its escapes'
/// surrogates, both of which orjson refuses; so a raw value that is not a plain string or
/// null is read once more, in full.
fn check(raw: &str) -> Result<(), serde_json::Error> {
    if raw == "null" || plain_str(raw).is_some() {
        return Ok(());
    }
    serde_json::from_str::<Strict>(raw).map(|_| ())
}

/// Any JSON value, read in full: numbers parsed (an infinite one is an error, as in orjson)
/// and strings decoded (a lone surrogate is an error, as in orjson).
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Strict, E> {
        if value.is_finite() {
            Ok(Strict)
        } else {
            Err(E::custom("number is infinite"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_key::<Strict>()?.is_some() {
            map.next_value::<Strict>()?;
        }
        Ok(Strict)
    }
}
