//! [`Value`]: any msgpack value lymph sends, kept so that it re-encodes byte for byte.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EMBEDDED_MSGPACK_EXT, EncodeError, Item, Reader, write};

/// A dynamic msgpack value, as lymph 0.15 sends it.
///
/// Decoding and re-encoding any body or header a Python lymph peer sends gives back the same
/// bytes: integers, strings, binaries, containers and ext values are written in the smallest form
/// (as Python's packer does), floats keep their width, and maps keep their order and duplicate keys.
///
/// lymph's tagged maps, `{"__type__": <name>, "_": <value>}` (exactly these two entries, in this
/// order, with str keys and a known type name and payload shape), decode into the tagged variants
/// ([`Value::DateTime`] and the rest) and encode back into the same map. Any other map, including
/// one with an unknown `__type__`, stays a [`Value::Map`]. The typed counterparts for handler
/// signatures live in [`types`](crate::types).
///
/// # Integers
///
/// Every integer that fits `i64` is an [`Int`](Value::Int), however it was encoded; only unsigned
/// integers above `i64::MAX` are [`UInt`](Value::UInt). Both encode in the smallest form, unsigned
/// for non-negative values, so `Int(5)` and `UInt(5)` give the same bytes (but are not equal).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `nil` (Python `None`).
    #[default]
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An unsigned integer; the decoder produces it only above `i64::MAX`.
    UInt(u64),
    /// A 32-bit float (`0xca`).
    F32(f32),
    /// A 64-bit float (`0xcb`), which is how Python packs every float.
    F64(f64),
    /// A string (the msgpack str family).
    Str(String),
    /// Bytes (the msgpack bin family).
    Bin(Vec<u8>),
    /// An array (Python list or tuple).
    Array(Vec<Value>),
    /// A map, in wire order, duplicate keys kept.
    Map(Vec<(Value, Value)>),
    /// An ext value: type code and data. Code 101 is embedded msgpack, see [`Value::embedded`].
    Ext(i8, Vec<u8>),
    /// A Python `datetime`: `{"__type__": "datetime", "_": "2024-01-02T03:04:05+0000"}`, the
    /// string kept exactly as sent.
    DateTime(String),
    /// A Python `date`: `{"__type__": "date", "_": "2024-01-02"}`.
    Date(String),
    /// A Python `time`: `{"__type__": "time", "_": "03:04:05Z"}`.
    Time(String),
    /// A Python `Decimal`: `{"__type__": "Decimal", "_": "2.50"}`.
    Decimal(String),
    /// A Python `UUID`: `{"__type__": "UUID", "_": "<hyphenated hex>"}`.
    Uuid(String),
    /// A Python `set`: `{"__type__": "set", "_": [..]}`.
    Set(Vec<Value>),
    /// lymph's `Undefined` sentinel: `{"__type__": "UndefinedType", "_": ""}`.
    Undefined,
}

/// The tagged types of lymph's serializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    DateTime,
    Date,
    Time,
    Decimal,
    Uuid,
    Set,
    Undefined,
}

impl Tag {
    const ALL: [Tag; 7] = [Tag::DateTime, Tag::Date, Tag::Time, Tag::Decimal, Tag::Uuid, Tag::Set, Tag::Undefined];

    /// The `__type__` string: Python's `type(obj).__name__`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tag::DateTime => "datetime",
            Tag::Date => "date",
            Tag::Time => "time",
            Tag::Decimal => "Decimal",
            Tag::Uuid => "UUID",
            Tag::Set => "set",
            Tag::Undefined => "UndefinedType",
        }
    }

    fn from_name(name: &str) -> Option<Tag> {
        Tag::ALL.into_iter().find(|tag| tag.name() == name)
    }

    /// Whether `payload` is what lymph writes as `_` for this type.
    fn accepts(self, payload: &Value) -> bool {
        match self {
            Tag::Set => matches!(payload, Value::Array(_)),
            Tag::Undefined => matches!(payload, Value::Str(s) if s.is_empty()),
            _ => matches!(payload, Value::Str(_)),
        }
    }

    /// The tagged variant holding `payload`, which [`Tag::accepts`].
    fn build(self, payload: Value) -> Value {
        match (self, payload) {
            (Tag::Set, Value::Array(items)) => Value::Set(items),
            (Tag::Undefined, _) => Value::Undefined,
            (Tag::DateTime, Value::Str(s)) => Value::DateTime(s),
            (Tag::Date, Value::Str(s)) => Value::Date(s),
            (Tag::Time, Value::Str(s)) => Value::Time(s),
            (Tag::Decimal, Value::Str(s)) => Value::Decimal(s),
            (Tag::Uuid, Value::Str(s)) => Value::Uuid(s),
            (_, payload) => payload,
        }
    }
}

/// The `_` of a tagged value, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    Str(&'a str),
    Items(&'a [Value]),
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Str(s) => serializer.serialize_str(s),
            Payload::Items(items) => items.serialize(serializer),
        }
    }
}

static NIL: Value = Value::Nil;

impl Value {
    /// Decodes exactly one msgpack value.
    ///
    /// # Errors
    ///
    /// When the bytes are not one complete, well-formed value with UTF-8 strings, nesting at most
    /// [`MAX_DEPTH`](codec::MAX_DEPTH) deep. Never panics, whatever the bytes.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = decode(&mut reader, 0)?;
        reader.finish()?;
        Ok(value)
    }

    /// Encodes the value as Python lymph would.
    ///
    /// # Panics
    ///
    /// When a string, binary or container is longer than `u32::MAX`, which msgpack cannot express.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_msgpack(&mut out);
        out
    }

    /// Appends the value's msgpack encoding to `out`.
    ///
    /// # Panics
    ///
    /// As [`Value::to_msgpack`].
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        if let Some((tag, payload)) = self.tagged() {
            write::map_len(out, 2);
            write::str(out, "__type__");
            write::str(out, tag.name());
            write::str(out, "_");
            match payload {
                Payload::Str(s) => write::str(out, s),
                Payload::Items(items) => write_array(out, items),
            }
            return;
        }
        match self {
            Value::Nil => out.push(0xc0),
            Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Int(n) => write::int(out, *n),
            Value::UInt(n) => write::uint(out, *n),
            Value::F32(x) => {
                out.push(0xca);
                out.extend_from_slice(&x.to_bits().to_be_bytes());
            }
            Value::F64(x) => {
                out.push(0xcb);
                out.extend_from_slice(&x.to_bits().to_be_bytes());
            }
            Value::Str(s) => write::str(out, s),
            Value::Bin(b) => write::bin(out, b),
            Value::Array(items) => write_array(out, items),
            Value::Map(entries) => {
                write::map_len(out, entries.len());
                for (k, v) in entries {
                    k.write_msgpack(out);
                    v.write_msgpack(out);
                }
            }
            Value::Ext(code, data) => write::ext(out, *code, data),
            Value::DateTime(_)
            | Value::Date(_)
            | Value::Time(_)
            | Value::Decimal(_)
            | Value::Uuid(_)
            | Value::Set(_)
            | Value::Undefined => {
                // Handled by `tagged` above.
            }
        }
    }

    /// The lymph type and payload of a tagged variant.
    pub(crate) fn tagged(&self) -> Option<(Tag, Payload<'_>)> {
        Some(match self {
            Value::DateTime(s) => (Tag::DateTime, Payload::Str(s)),
            Value::Date(s) => (Tag::Date, Payload::Str(s)),
            Value::Time(s) => (Tag::Time, Payload::Str(s)),
            Value::Decimal(s) => (Tag::Decimal, Payload::Str(s)),
            Value::Uuid(s) => (Tag::Uuid, Payload::Str(s)),
            Value::Set(items) => (Tag::Set, Payload::Items(items)),
            Value::Undefined => (Tag::Undefined, Payload::Str("")),
            _ => return None,
        })
    }

    /// A map from decoded entries: a tagged variant when the entries are lymph's tagged form
    /// (`"__type__"` then `"_"`, str keys, a known name and payload shape), else a plain map.
    pub(crate) fn from_entries(entries: Vec<(Value, Value)>) -> Value {
        let tag = match entries.as_slice() {
            [(Value::Str(k1), Value::Str(name)), (Value::Str(k2), payload)] if k1 == "__type__" && k2 == "_" => {
                Tag::from_name(name).filter(|tag| tag.accepts(payload))
            }
            _ => None,
        };
        match tag {
            Some(tag) => {
                let payload = entries.into_iter().nth(1).map_or(Value::Nil, |(_, v)| v);
                tag.build(payload)
            }
            None => Value::Map(entries),
        }
    }

    /// A map with string keys, in the given order, e.g.
    /// `Value::map([("text", "hi")])`. It is kept as given: a tagged-looking map built this way
    /// stays a [`Value::Map`] (and encodes to the same bytes as the tagged variant).
    pub fn map<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Value
    where
        K: Into<String>,
        V: Into<Value>,
    {
        Value::Map(entries.into_iter().map(|(k, v)| (Value::Str(k.into()), v.into())).collect())
    }

    /// Embeds `value` as lymph's ext type 101: the value packed once and carried as opaque bytes.
    pub fn embed(value: &Value) -> Value {
        Value::Ext(EMBEDDED_MSGPACK_EXT, value.to_msgpack())
    }

    /// The value embedded in an ext 101 (embedded msgpack) value; `None` for any other value.
    pub fn embedded(&self) -> Option<Result<Value, DecodeError>> {
        match self {
            Value::Ext(EMBEDDED_MSGPACK_EXT, data) => Some(Value::from_msgpack(data)),
            _ => None,
        }
    }

    /// The string, for [`Value::Str`], and for [`Value::Bin`] holding UTF-8 (what Python 2 peers
    /// send for their native strings).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bin(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The integer, if it is one that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(n) => Some(n),
            Value::UInt(n) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    /// The integer, if it is a non-negative one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(n) => u64::try_from(n).ok(),
            Value::UInt(n) => Some(n),
            _ => None,
        }
    }

    /// The number as `f64`: floats, and integers (rounded to the nearest `f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(x) => Some(f64::from(x)),
            Value::F64(x) => Some(x),
            Value::Int(n) => Some(n as f64),
            Value::UInt(n) => Some(n as f64),
            _ => None,
        }
    }

    /// The boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a map, in wire order.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Whether this is nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The value under the string key `key` of a map (a str key, or bin holding it). With
    /// duplicate keys the last one wins, as in the Python dict lymph decodes into.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.iter().rev().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// The value as JSON, the way lymph's JSON serializer writes it.
    ///
    /// - tagged variants become their `{"__type__": .., "_": ..}` object;
    /// - [`Value::Bin`] becomes an array of byte values;
    /// - [`Value::Ext`] becomes `{"__ext__": <code>, "data": [<byte values>]}`;
    /// - map keys that are not strings become their [`Display`](fmt::Display) text (`1`, `true`,
    ///   `null`, as Python's `json.dumps` does), and with duplicate keys the last one wins;
    /// - NaN and infinite floats become `null`, as JSON cannot hold them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        let bytes = |b: &[u8]| Json::Array(b.iter().map(|&x| Json::from(x)).collect());
        if let Some((tag, payload)) = self.tagged() {
            let payload = match payload {
                Payload::Str(s) => Json::from(s),
                Payload::Items(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            };
            let mut object = serde_json::Map::new();
            object.insert("__type__".to_owned(), Json::from(tag.name()));
            object.insert("_".to_owned(), payload);
            return Json::Object(object);
        }
        match self {
            Value::Nil => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(n) => Json::from(*n),
            Value::UInt(n) => Json::from(*n),
            Value::F32(x) => serde_json::Number::from_f64(f64::from(*x)).map_or(Json::Null, Json::Number),
            Value::F64(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::from(s.as_str()),
            Value::Bin(b) => bytes(b),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::Str(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
            Value::Ext(code, data) => {
                let mut object = serde_json::Map::new();
                object.insert("__ext__".to_owned(), Json::from(*code));
                object.insert("data".to_owned(), bytes(data));
                Json::Object(object)
            }
            // The tagged variants were handled above.
            _ => Json::Null,
        }
    }

    /// A value from JSON, the inverse of [`Value::to_json`] where JSON allows it.
    ///
    /// Integers become [`Value::Int`] (or [`Value::UInt`] above `i64::MAX`), other numbers
    /// [`Value::F64`]. An object of exactly the keys `__type__` and `_`, in any order (JSON objects
    /// have none), with a known type name and payload shape, becomes the tagged variant; an object
    /// of exactly `__ext__` (an `i8`) and `data` (byte values) becomes [`Value::Ext`]. Binary data
    /// cannot be told from an array of numbers and comes back as an array.
    pub fn from_json(json: serde_json::Value) -> Value {
        use serde_json::Value as Json;
        match json {
            Json::Null => Value::Nil,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(u)) => Value::UInt(u),
                _ => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::Str(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from_json).collect()),
            Json::Object(object) => {
                let entries: Vec<(Value, Value)> =
                    object.into_iter().map(|(k, v)| (Value::Str(k), Value::from_json(v))).collect();
                from_json_object(entries)
            }
        }
    }
}

/// Recognises the tagged and ext forms of [`Value::to_json`] in a JSON object's entries, whose
/// order carries no meaning.
fn from_json_object(mut entries: Vec<(Value, Value)>) -> Value {
    if entries.len() != 2 {
        return Value::Map(entries);
    }
    // Put the candidate keys in the order `from_entries` and the ext check expect.
    let swapped = matches!(entries[0].0.as_str(), Some("_" | "data"));
    if swapped {
        entries.swap(0, 1);
    }
    let value = Value::from_entries(entries);
    let Value::Map(mut entries) = value else {
        return value;
    };
    if let [(Value::Str(k1), code), (Value::Str(k2), Value::Array(data))] = entries.as_slice()
        && k1 == "__ext__"
        && k2 == "data"
        && let Some(code) = code.as_i64().and_then(|c| i8::try_from(c).ok())
        && let Some(data) = data.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect()
    {
        return Value::Ext(code, data);
    }
    if swapped {
        entries.swap(0, 1);
    }
    Value::Map(entries)
}

fn write_array(out: &mut Vec<u8>, items: &[Value]) {
    write::array_len(out, items.len());
    for item in items {
        item.write_msgpack(out);
    }
}

fn decode(reader: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
    Ok(match reader.item()? {
        Item::Nil => Value::Nil,
        Item::Bool(b) => Value::Bool(b),
        Item::Int(n) => Value::Int(n),
        Item::UInt(n) => Value::UInt(n),
        Item::F32(x) => Value::F32(x),
        Item::F64(x) => Value::F64(x),
        Item::Str(s) => Value::Str(s.to_owned()),
        Item::Bin(b) => Value::Bin(b.to_vec()),
        Item::Ext(code, data) => Value::Ext(code, data.to_vec()),
        Item::Array(len) => {
            codec::check_depth(depth)?;
            // Every element takes at least one byte: never reserve more than could be there.
            let mut items = Vec::with_capacity(len.min(reader.remaining()));
            for _ in 0..len {
                items.push(decode(reader, depth + 1)?);
            }
            Value::Array(items)
        }
        Item::Map(len) => {
            codec::check_depth(depth)?;
            let mut entries = Vec::with_capacity(len.min(reader.remaining() / 2));
            for _ in 0..len {
                let key = decode(reader, depth + 1)?;
                let value = decode(reader, depth + 1)?;
                entries.push((key, value));
            }
            Value::from_entries(entries)
        }
    })
}

impl std::ops::Index<&str> for Value {
    type Output = Value;

    /// The value under `key` (see [`Value::get`]), or [`Value::Nil`] when there is none.
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NIL)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Str(s.clone())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Int(i64::from(n))
            }
        }
    )*};
}
from_signed!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    /// An [`Int`](Value::Int) when `n` fits `i64`, else a [`UInt`](Value::UInt).
    fn from(n: u64) -> Self {
        i64::try_from(n).map_or(Value::UInt(n), Value::Int)
    }
}

impl From<f32> for Value {
    fn from(x: f32) -> Self {
        Value::F32(x)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::F64(x)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// The value, or [`Value::Nil`] for `None`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Nil, Into::into)
    }
}

impl fmt::Display for Value {
    /// JSON-like text: `null`, `true`, `1`, `1.5`, `"text"`, `[1, 2]`, `{"key": "value"}`, with
    /// `bin(00ff)`, `ext(101, c0)`, and tagged values as `datetime("2024-01-02T03:04:05")`,
    /// `set([1, 2])` or `Undefined`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
            bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
        fn list(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            f.write_char(']')
        }
        match self {
            Value::Nil => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::UInt(n) => write!(f, "{n}"),
            Value::F32(x) => write!(f, "{x:?}"),
            Value::F64(x) => write!(f, "{x:?}"),
            Value::Str(s) => quoted(f, s),
            Value::Bin(b) => {
                f.write_str("bin(")?;
                hex(f, b)?;
                f.write_char(')')
            }
            Value::Array(items) => list(f, items),
            Value::Map(entries) => {
                f.write_char('{')?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_char('}')
            }
            Value::Ext(code, data) => {
                write!(f, "ext({code}, ")?;
                hex(f, data)?;
                f.write_char(')')
            }
            Value::Undefined => f.write_str("Undefined"),
            Value::Set(items) => {
                f.write_str("set(")?;
                list(f, items)?;
                f.write_char(')')
            }
            Value::DateTime(s) | Value::Date(s) | Value::Time(s) | Value::Decimal(s) | Value::Uuid(s) => {
                let name = self.tagged().map_or("", |(tag, _)| tag.name());
                write!(f, "{name}(")?;
                quoted(f, s)?;
                f.write_char(')')
            }
        }
    }
}

/// Writes `s` as a JSON string literal.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl Serialize for Value {
    /// Serializes as the matching serde type: bin as bytes, ext as rmp-serde's ext struct
    /// ([`rmp_serde::MSGPACK_EXT_STRUCT_NAME`]), tagged variants as their two-entry map.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some((tag, payload)) = self.tagged() {
            let mut map = serializer.serialize_map(Some(2))?;
            map.serialize_entry("__type__", tag.name())?;
            map.serialize_entry("_", &payload)?;
            return map.end();
        }
        match self {
            Value::Nil => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(n) => serializer.serialize_i64(*n),
            Value::UInt(n) => serializer.serialize_u64(*n),
            Value::F32(x) => serializer.serialize_f32(*x),
            Value::F64(x) => serializer.serialize_f64(*x),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bin(b) => serializer.serialize_bytes(b),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Ext(code, data) => serializer
                .serialize_newtype_struct(rmp_serde::MSGPACK_EXT_STRUCT_NAME, &(code, serde_bytes::Bytes::new(data))),
            // The tagged variants were handled above.
            _ => serializer.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    /// Deserializes any self-describing value: bytes become [`Value::Bin`], `f32` stays
    /// [`Value::F32`], maps in lymph's tagged form become tagged variants, and rmp-serde's ext
    /// values (a newtype holding `(code, bytes)`) become [`Value::Ext`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// How many elements a visitor reserves room for at most, whatever a format announces.
const MAX_PREALLOCATION: usize = 4096;

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any msgpack value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        i64::try_from(n)
            .map(Value::Int)
            .or_else(|_| u64::try_from(n).map(Value::UInt))
            .map_err(|_| E::custom("integer out of the range of msgpack"))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        u64::try_from(n).map(Value::from).map_err(|_| E::custom("integer out of the range of msgpack"))
    }

    fn visit_f32<E: de::Error>(self, x: f32) -> Result<Value, E> {
        Ok(Value::F32(x))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Value, E> {
        Ok(Value::F64(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(b.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(b))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        // rmp-serde hands ext values over as a newtype holding the sequence `(code, bytes)`.
        match Value::deserialize(deserializer)? {
            Value::Array(items) => match <[Value; 2]>::try_from(items) {
                Ok([Value::Int(code), Value::Bin(data)]) if i8::try_from(code).is_ok() => {
                    Ok(Value::Ext(code as i8, data))
                }
                Ok(pair) => Ok(Value::Array(pair.into())),
                Err(items) => Ok(Value::Array(items)),
            },
            other => Ok(other),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATION));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_PREALLOCATION));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Value::from_entries(entries))
    }
}

/// Converts any serializable value into a [`Value`], as lymph would encode it (structs become
/// maps with field names).
///
/// # Errors
///
/// When the value cannot be encoded (see [`codec::to_msgpack`]).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, EncodeError> {
    let bytes = codec::to_msgpack(value)?;
    Value::from_msgpack(&bytes).map_err(|e| EncodeError::Serde(e.to_string()))
}

/// Converts a [`Value`] into any deserializable type, as if it had been received as msgpack.
///
/// # Errors
///
/// When the value does not have the shape of `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    codec::from_msgpack(&value.to_msgpack())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: &[u8]) -> Value {
        let value = Value::from_msgpack(bytes).unwrap();
        assert_eq!(value.to_msgpack(), bytes, "{value:?}");
        value
    }

    #[test]
    fn decodes_lymph_headers() {
        let mut bytes = b"\x82\xa7version\xc0\xa8trace_id\xd9\x20".to_vec();
        bytes.extend_from_slice(b"d373dd7d8b644db395794604a1355020");
        let value = round_trip(&bytes);
        assert!(value["version"].is_nil());
        assert_eq!(value["trace_id"].as_str(), Some("d373dd7d8b644db395794604a1355020"));
        assert!(value["missing"].is_nil());
        assert_eq!(value.get("missing"), None);
    }

    #[test]
    fn tagged_maps_decode_into_tagged_variants() {
        let dt = b"\x82\xa8__type__\xa8datetime\xa1_\xb82024-01-02T03:04:05+0000";
        assert_eq!(round_trip(dt), Value::DateTime("2024-01-02T03:04:05+0000".into()));
        let set = b"\x82\xa8__type__\xa3set\xa1_\x92\x01\x02";
        assert_eq!(round_trip(set), Value::Set(vec![Value::Int(1), Value::Int(2)]));
        let undefined = b"\x82\xa8__type__\xadUndefinedType\xa1_\xa0";
        assert_eq!(round_trip(undefined), Value::Undefined);
        let uuid = b"\x82\xa8__type__\xa4UUID\xa1_\xa1x";
        assert_eq!(round_trip(uuid), Value::Uuid("x".into()));
    }

    #[test]
    fn other_type_maps_stay_maps() {
        // Unknown name, wrong payload shape, keys in the other order, a third entry.
        for bytes in [
            &b"\x82\xa8__type__\xa7Unknown\xa1_\xa1x"[..],
            b"\x82\xa8__type__\xa3set\xa1_\xa1x",
            b"\x82\xa8__type__\xa8datetime\xa1_\x01",
            b"\x82\xa8__type__\xadUndefinedType\xa1_\xa1x",
            b"\x82\xa1_\xa1x\xa8__type__\xa4date",
            b"\x83\xa8__type__\xa4date\xa1_\xa1x\xa1y\xc0",
            b"\x82\xc4\x08__type__\xa4date\xa1_\xa1x",
        ] {
            assert!(matches!(round_trip(bytes), Value::Map(_)), "{bytes:?}");
        }
    }

    #[test]
    fn maps_keep_order_and_duplicates() {
        let value = round_trip(b"\x83\xa1b\x01\xa1a\x02\xa1b\x03");
        assert_eq!(value.as_map().map(<[_]>::len), Some(3));
        assert_eq!(value["b"], Value::Int(3), "the last duplicate wins, as in Python");
    }

    #[test]
    fn scalars_round_trip() {
        for bytes in [
            &b"\xc0"[..],
            b"\xc2",
            b"\xc3",
            b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xca\x3f\xc0\x00\x00",
            b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
            b"\xc4\x02\x00\xff",
            b"\xd4\x65\xc0",
            b"\xc7\x00\x01",
            b"\xd9\x20aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            round_trip(bytes);
        }
        assert_eq!(Value::from_msgpack(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), Ok(Value::UInt(u64::MAX)));
        assert_eq!(Value::from_msgpack(b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05"), Ok(Value::Int(5)));
        assert_eq!(Value::from_msgpack(b"\xca\x3f\xc0\x00\x00"), Ok(Value::F32(1.5)));
    }

    #[test]
    fn embedded_msgpack() {
        let inner = Value::map([("a", 1)]);
        let outer = Value::embed(&inner);
        assert_eq!(outer, Value::Ext(101, b"\x81\xa1a\x01".to_vec()));
        assert_eq!(outer.embedded(), Some(Ok(inner)));
        assert_eq!(Value::Ext(5, vec![]).embedded(), None);
        assert_eq!(Value::Ext(101, vec![0xc1]).embedded(), Some(Err(DecodeError::ReservedByte)));
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Value::from_msgpack(b""), Err(DecodeError::UnexpectedEof));
        assert_eq!(Value::from_msgpack(b"\xc1"), Err(DecodeError::ReservedByte));
        assert_eq!(Value::from_msgpack(b"\x01\x02"), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(Value::from_msgpack(b"\xa1\xff"), Err(DecodeError::InvalidUtf8));
        assert_eq!(Value::from_msgpack(b"\xdd\xff\xff\xff\xff"), Err(DecodeError::UnexpectedEof));
        assert_eq!(Value::from_msgpack(b"\xdf\xff\xff\xff\xff\xc0"), Err(DecodeError::UnexpectedEof));
        let deep = [vec![0x91; 300], vec![0xc0]].concat();
        assert_eq!(Value::from_msgpack(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::UInt(5).as_i64(), Some(5));
        assert_eq!(Value::UInt(u64::MAX).as_i64(), None);
        assert_eq!(Value::Int(-1).as_u64(), None);
        assert_eq!(Value::Int(7).as_u64(), Some(7));
        assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::Bin(b"hi".to_vec()).as_str(), Some("hi"));
        assert_eq!(Value::Bin(vec![0xff]).as_str(), None);
        assert_eq!(Value::from(u64::MAX), Value::UInt(u64::MAX));
        assert_eq!(Value::from(Some("x")), Value::Str("x".into()));
        assert_eq!(Value::from(None::<i64>), Value::Nil);
        assert_eq!(Value::from(true).as_bool(), Some(true));
    }

    #[test]
    fn display_is_json_like() {
        let value = Value::map([
            ("a", Value::Array(vec![Value::Nil, Value::from(1.5), Value::from("q\"")])),
            ("b", Value::DateTime("2024-01-02T03:04:05".into())),
            ("c", Value::Set(vec![Value::from(1)])),
            ("d", Value::Bin(vec![0, 255])),
            ("e", Value::Undefined),
        ]);
        assert_eq!(
            value.to_string(),
            r#"{"a": [null, 1.5, "q\""], "b": datetime("2024-01-02T03:04:05"), "c": set([1]), "d": bin(00ff), "e": Undefined}"#
        );
    }

    #[test]
    fn json_conversions() {
        let value = Value::map([
            ("when", Value::Date("2024-01-02".into())),
            ("bin", Value::Bin(vec![1, 2])),
            ("ext", Value::Ext(101, vec![0xc0])),
            ("n", Value::from(-3)),
            ("f", Value::from(0.25)),
        ]);
        let json = value.to_json();
        assert_eq!(
            json,
            serde_json::json!({
                "when": {"__type__": "date", "_": "2024-01-02"},
                "bin": [1, 2],
                "ext": {"__ext__": 101, "data": [192]},
                "n": -3,
                "f": 0.25,
            })
        );
        let back = Value::from_json(json);
        assert_eq!(back["when"], Value::Date("2024-01-02".into()));
        assert_eq!(back["ext"], Value::Ext(101, vec![0xc0]));
        assert_eq!(back["bin"], Value::Array(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(Value::from_json(serde_json::json!(u64::MAX)), Value::UInt(u64::MAX));
        let plain = Value::from_json(serde_json::json!({"_": 1, "z": 2}));
        assert_eq!(plain, Value::map([("_", 1), ("z", 2)]));
    }

    #[test]
    fn serde_matches_the_native_encoder() {
        let value = Value::map([
            ("ext", Value::Ext(101, vec![0xc0])),
            ("f32", Value::F32(1.5)),
            ("bin", Value::Bin(vec![1; 40])),
            ("set", Value::Set(vec![Value::Uuid("u".into()), Value::Undefined])),
            ("big", Value::UInt(u64::MAX)),
            ("neg", Value::Int(-200)),
        ]);
        let bytes = codec::to_msgpack(&value).unwrap();
        assert_eq!(bytes, value.to_msgpack());
        assert_eq!(codec::from_msgpack::<Value>(&bytes), Ok(value.clone()));
        assert_eq!(to_value(&value), Ok(value.clone()));
        assert_eq!(from_value::<Value>(value.clone()), Ok(value));
    }
}
