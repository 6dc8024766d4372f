//! Typed counterparts of lymph's tagged msgpack types, for handler signatures.
//!
//! Python lymph packs `datetime`, `date`, `time`, `Decimal`, `UUID` and `set` values as the map
//! `{"__type__": <type name>, "_": <value>}`. The types here serialize to exactly that map and
//! deserialize from it (accepting the two keys in either order), so a handler can take or return
//! them and talk to Python peers:
//!
//! | type | `__type__` | `_` |
//! | --- | --- | --- |
//! | [`DateTime`] | `datetime` | `2024-01-02T03:04:05`, optionally with an offset `+0200` |
//! | [`Date`] | `date` | `2024-01-02` |
//! | [`Time`] | `time` | `03:04:05Z` |
//! | [`Decimal`] | `Decimal` | Python's `str(Decimal)`: `2.50`, `-1E+3`, `NaN`, `Infinity` |
//! | [`Uuid`] | `UUID` | `12345678-1234-5678-1234-567812345678` |
//! | [`Set`] | `set` | a list |
//!
//! The string types are newtypes over the wire text, checked against the format lymph writes and
//! otherwise kept exactly as received; convert them with the date, decimal or UUID crate of your
//! choice. In a dynamic [`Value`] the same data is a tagged variant, e.g. [`Value::DateTime`].

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::Value;

/// A string that does not have the format lymph writes for its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected {expected}")]
pub struct FormatError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

impl FormatError {
    /// The lymph type name, e.g. `datetime`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The rejected text.
    pub fn value(&self) -> &str {
        &self.value
    }
}

macro_rules! tagged_string {
    (
        $(#[$doc:meta])*
        $name:ident, tag = $tag:literal, variant = $variant:ident, check = $check:path,
        expected = $expected:literal
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Checks that `text` is ", $expected, ", and keeps it as it is.")]
            ///
            /// # Errors
            ///
            /// When it is not.
            pub fn new(text: impl Into<String>) -> Result<Self, FormatError> {
                let text = text.into();
                if $check(&text) {
                    Ok(Self(text))
                } else {
                    Err(FormatError { kind: $tag, value: text, expected: $expected })
                }
            }

            /// The text, as it travels on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text, as it travels on the wire.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = FormatError;

            fn from_str(text: &str) -> Result<Self, FormatError> {
                Self::new(text)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for Value {
            fn from(value: $name) -> Value {
                Value::$variant(value.0)
            }
        }

        impl Serialize for $name {
            #[doc = concat!("Serializes as `{\"__type__\": \"", $tag, "\", \"_\": <text>}`.")]
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_tagged(serializer, $tag, self.0.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            #[doc = concat!("Deserializes from `{\"__type__\": \"", $tag, "\", \"_\": <text>}`.")]
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text: String = deserialize_tagged(deserializer, $tag)?;
                Self::new(text).map_err(de::Error::custom)
            }
        }
    };
}

tagged_string! {
    /// A Python `datetime` as lymph sends it: `strftime('%Y-%m-%dT%H:%M:%S%z')`.
    ///
    /// Microseconds are not sent. An aware datetime carries its UTC offset as `+HHMM` (Python also
    /// writes `+HHMMSS` or `+HHMMSS.ffffff` for odd offsets, accepted too); a naive one has none.
    DateTime, tag = "datetime", variant = DateTime, check = is_datetime,
    expected = "%Y-%m-%dT%H:%M:%S with an optional +HHMM or -HHMM offset"
}

tagged_string! {
    /// A Python `date` as lymph sends it: `%Y-%m-%d`.
    Date, tag = "date", variant = Date, check = is_date, expected = "%Y-%m-%d"
}

tagged_string! {
    /// A Python `time` as lymph sends it: `%H:%M:%SZ`, with a literal `Z` whatever the time zone.
    Time, tag = "time", variant = Time, check = is_time, expected = "%H:%M:%SZ"
}

tagged_string! {
    /// A Python `Decimal` as lymph sends it: `str(d)`, e.g. `2.50`, `-1E+3`, `NaN` or `Infinity`.
    ///
    /// Anything Python's `Decimal()` accepts (without surrounding spaces or underscores) is accepted.
    Decimal, tag = "Decimal", variant = Decimal, check = is_decimal,
    expected = "a decimal number such as 2.50, -1E+3, NaN or Infinity"
}

tagged_string! {
    /// A Python `UUID` as lymph sends it: `str(u)`, hyphenated hex (8-4-4-4-12).
    ///
    /// Python writes lowercase; uppercase hex is accepted and kept.
    Uuid, tag = "UUID", variant = Uuid, check = is_uuid,
    expected = "a hyphenated uuid (8-4-4-4-12 hex digits)"
}

/// A Python `set`, sent by lymph as `{"__type__": "set", "_": [..]}`.
///
/// The elements are kept in a `Vec`, in wire order; lymph does not deduplicate what it receives
/// either (the sender's set had unique elements).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Set<T>(pub Vec<T>);

impl<T> From<Vec<T>> for Set<T> {
    fn from(items: Vec<T>) -> Self {
        Set(items)
    }
}

impl<T> FromIterator<T> for Set<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Set(iter.into_iter().collect())
    }
}

impl<T: Into<Value>> From<Set<T>> for Value {
    fn from(set: Set<T>) -> Value {
        Value::Set(set.0.into_iter().map(Into::into).collect())
    }
}

impl<T: Serialize> Serialize for Set<T> {
    /// Serializes as `{"__type__": "set", "_": [..]}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_tagged(serializer, "set", &self.0)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Set<T> {
    /// Deserializes from `{"__type__": "set", "_": [..]}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_tagged(deserializer, "set").map(Set)
    }
}

fn serialize_tagged<S: Serializer, P: Serialize + ?Sized>(
    serializer: S,
    tag: &'static str,
    payload: &P,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(2))?;
    map.serialize_entry("__type__", tag)?;
    map.serialize_entry("_", payload)?;
    map.end()
}

fn deserialize_tagged<'de, D: Deserializer<'de>, P: Deserialize<'de>>(
    deserializer: D,
    tag: &'static str,
) -> Result<P, D::Error> {
    deserializer.deserialize_map(TaggedVisitor { tag, payload: PhantomData })
}

/// Reads `{"__type__": tag, "_": payload}`, keys in either order.
struct TaggedVisitor<P> {
    tag: &'static str,
    payload: PhantomData<P>,
}

impl<'de, P: Deserialize<'de>> Visitor<'de> for TaggedVisitor<P> {
    type Value = P;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a lymph tagged map {{\"__type__\": \"{}\", \"_\": ..}}", self.tag)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<P, A::Error> {
        const FIELDS: &[&str] = &["__type__", "_"];
        let mut tag_seen = false;
        let mut payload = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "__type__" if tag_seen => return Err(de::Error::duplicate_field("__type__")),
                "__type__" => {
                    let name: String = map.next_value()?;
                    if name != self.tag {
                        return Err(de::Error::invalid_value(de::Unexpected::Str(&name), &self));
                    }
                    tag_seen = true;
                }
                "_" if payload.is_some() => return Err(de::Error::duplicate_field("_")),
                "_" => payload = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        if !tag_seen {
            return Err(de::Error::missing_field("__type__"));
        }
        payload.ok_or_else(|| de::Error::missing_field("_"))
    }
}

// ---- format checks --------------------------------------------------------------------------

/// Whether `s` is `n` ASCII digits, and their value.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD`, a real calendar date (years 1 to 9999, as Python's `date`).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (number(&s[0..4]), number(&s[5..7]), number(&s[8..10])) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1 && (1..=days).contains(&day)
}

/// `HH:MM:SS`, a valid time of day.
fn is_hms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && number(&s[0..2]).is_some_and(|h| h < 24)
        && number(&s[3..5]).is_some_and(|m| m < 60)
        && number(&s[6..8]).is_some_and(|sec| sec < 60)
}

/// `HH:MM:SSZ`.
fn is_time(s: &str) -> bool {
    s.strip_suffix('Z').is_some_and(is_hms)
}

/// `%Y-%m-%dT%H:%M:%S` with an optional `%z` offset: `+HHMM`, `+HHMMSS` or `+HHMMSS.ffffff`.
fn is_datetime(s: &str) -> bool {
    if s.len() < 19 || !s.is_char_boundary(19) {
        return false;
    }
    let (date_time, offset) = s.split_at(19);
    let ok = date_time.as_bytes()[10] == b'T' && is_date(&date_time[..10]) && is_hms(&date_time[11..]);
    ok && (offset.is_empty() || is_offset(offset))
}

fn is_offset(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) else {
        return false;
    };
    let (hms, micros) = rest.split_once('.').map_or((rest, None), |(a, b)| (a, Some(b)));
    if !hms.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let hours_minutes =
        hms.len() >= 4 && number(&hms[0..2]).is_some_and(|h| h < 24) && number(&hms[2..4]).is_some_and(|m| m < 60);
    let seconds = match hms.len() {
        4 => micros.is_none(),
        6 => number(&hms[4..6]).is_some_and(|sec| sec < 60),
        _ => false,
    };
    hours_minutes && seconds && micros.is_none_or(|m| m.len() == 6 && number(m).is_some())
}

/// Python's `Decimal()` syntax: `[sign] (digits [. [digits]] | . digits) [e [sign] digits]`,
/// `[sign] Inf[inity]`, or `[sign] [s]NaN[digits]`, case-insensitive words.
fn is_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return true;
    }
    if let Some(diagnostic) = lower.strip_prefix("nan").or_else(|| lower.strip_prefix("snan")) {
        return diagnostic.bytes().all(|b| b.is_ascii_digit());
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (lower.as_str(), None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (digits(int) || int.is_empty()) && (digits(frac) || frac.is_empty()) && !(int.is_empty() && frac.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        for ok in [
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05+0000",
            "2014-09-12T08:33:12+0200",
            "2024-02-29T23:59:59-0530",
            "2024-01-02T03:04:05+013015",
            "2024-01-02T03:04:05+013015.123456",
        ] {
            assert!(DateTime::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+00:00",
            "2024-01-02T03:04:05.123",
            "2023-02-29T00:00:00",
            "2024-13-01T00:00:00",
            "2024-01-02T24:00:00",
            "2024-01-02T03:04:05+2400",
            "2024-01-02T03:04:05+01",
            "2024-01-02T03:04:0é",
            "2024-01-02T03:04:05+1é2",
            "2024-01-02T03:04:05+12é",
            "+024-01-02T03:04:05",
        ] {
            assert!(DateTime::new(bad).is_err(), "{bad}");
        }
        let err = DateTime::new("x").unwrap_err();
        assert_eq!(err.kind(), "datetime");
        assert_eq!(
            err.to_string(),
            r#"invalid datetime "x": expected %Y-%m-%dT%H:%M:%S with an optional +HHMM or -HHMM offset"#
        );
    }

    #[test]
    fn dates_and_times() {
        assert!(Date::new("2024-01-02").is_ok());
        assert!(Date::new("0001-01-01").is_ok());
        assert!(Date::new("0000-01-01").is_err());
        assert!(Date::new("2024-1-02").is_err());
        assert!(Date::new("2024-04-31").is_err());
        assert!(Time::new("03:04:05Z").is_ok());
        assert!(Time::new("03:04:05").is_err());
        assert!(Time::new("03:60:05Z").is_err());
    }

    #[test]
    fn decimals() {
        for ok in [
            "2.50", "-1", "+1", "0", "1E+3", "-1.5e-7", "1.", ".5", "NaN", "-NaN", "sNaN12", "Infinity", "-Inf", "inf",
            "1e5",
        ] {
            assert!(Decimal::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "-", "1.2.3", "1e", "e5", "abc", "1 ", "1_000", "NaNx", "--1", "1e+-2"] {
            assert!(Decimal::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuids() {
        assert!(Uuid::new("12345678-1234-5678-1234-567812345678").is_ok());
        assert!(Uuid::new("ABCDEF00-1234-5678-1234-567812345678").is_ok());
        assert!(Uuid::new("12345678123456781234567812345678").is_err());
        assert!(Uuid::new("12345678-1234-5678-1234-56781234567g").is_err());
    }

    #[test]
    fn values_from_types() {
        let when = DateTime::new("2024-01-02T03:04:05").unwrap();
        assert_eq!(Value::from(when.clone()), Value::DateTime("2024-01-02T03:04:05".into()));
        assert_eq!(when.to_string(), "2024-01-02T03:04:05");
        assert_eq!(Value::from(Set(vec![1, 2])), Value::Set(vec![Value::Int(1), Value::Int(2)]));
    }
}
