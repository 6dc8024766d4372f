//! Property tests of the msgpack codec: round trips, agreement between the native encoder and the
//! serde path, typed round trips, and no panics on arbitrary input.

use bytes::Bytes;
use lymph_core::types::{Date, DateTime, Decimal, Set, Time, Uuid};
use lymph_core::value::{from_value, to_value};
use lymph_core::{Event, Headers, Message, Value, codec};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const TAG_NAMES: [&str; 7] = ["datetime", "date", "time", "Decimal", "UUID", "set", "UndefinedType"];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,40}",
        1 => "[a-z]{250,300}",
        1 => Just(String::new()),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![-40i64..300, -70000i64..70000].prop_map(Value::Int),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::UInt),
        // Every bit pattern, NaNs with payloads included.
        any::<u32>().prop_map(|bits| Value::F32(f32::from_bits(bits))),
        any::<u64>().prop_map(|bits| Value::F64(f64::from_bits(bits))),
        text().prop_map(Value::Str),
        vec(any::<u8>(), 0..300).prop_map(Value::Bin),
        (any::<i8>(), vec(any::<u8>(), 0..20)).prop_map(|(code, data)| Value::Ext(code, data)),
        "\\PC{0,30}".prop_map(Value::DateTime),
        "\\PC{0,30}".prop_map(Value::Date),
        "\\PC{0,30}".prop_map(Value::Time),
        "\\PC{0,30}".prop_map(Value::Decimal),
        "\\PC{0,30}".prop_map(Value::Uuid),
        Just(Value::Undefined),
    ]
}

/// Any value, up to four containers deep, including maps that look like lymph's tagged maps.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 96, 20, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..20).prop_map(Value::Array),
            vec((inner.clone(), inner.clone()), 0..20).prop_map(Value::Map),
            vec(inner.clone(), 0..5).prop_map(Value::Set),
            (prop_oneof![proptest::sample::select(&TAG_NAMES[..]).prop_map(str::to_owned), "[a-z]{1,8}"], inner)
                .prop_map(|(name, payload)| Value::map([("__type__", Value::from(name)), ("_", payload)])),
        ]
    })
}

/// Equality with floats compared bit for bit.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) | (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        _ => a == b,
    }
}

/// Whether `value` holds a map in the shape of a tagged map, which decodes as a tagged variant.
fn looks_tagged(value: &Value) -> bool {
    match value {
        Value::Map(entries) => {
            let tagged = matches!(
                entries.as_slice(),
                [(Value::Str(k1), Value::Str(name)), (Value::Str(k2), _)]
                    if k1 == "__type__" && k2 == "_" && TAG_NAMES.contains(&name.as_str())
            );
            tagged || entries.iter().any(|(k, v)| looks_tagged(k) || looks_tagged(v))
        }
        Value::Array(items) | Value::Set(items) => items.iter().any(looks_tagged),
        _ => false,
    }
}

/// Ways to damage an encoding.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    Replace(usize, u8),
    Insert(usize, u8),
}

fn damaged(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        let len = bytes.len();
        match *d {
            Damage::Truncate(at) => bytes.truncate(at % (len + 1)),
            Damage::Replace(at, b) if len > 0 => bytes[at % len] = b,
            Damage::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Damage::Replace(..) => {}
        }
    }
    bytes
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    vec(
        prop_oneof![
            any::<usize>().prop_map(Damage::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Replace(at, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
        ],
        1..4,
    )
}

/// Decoding must agree with validation, never panic, and give values that round trip.
fn check_decoding(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = Value::from_msgpack(bytes);
    prop_assert_eq!(codec::validate(bytes).is_ok(), decoded.is_ok());
    if let Ok(value) = decoded {
        let again = Value::from_msgpack(&value.to_msgpack());
        prop_assert!(again.as_ref().is_ok_and(|v| same(v, &value)), "{value:?} -> {again:?}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(v in value()) {
        let bytes = v.to_msgpack();
        let decoded = Value::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if looks_tagged(&v) {
            // The tagged-looking maps turned into tagged variants, which encode the same.
            prop_assert_eq!(decoded.to_msgpack(), bytes);
        } else {
            prop_assert!(same(&decoded, &v), "{v:?} decoded as {decoded:?}");
        }
    }

    #[test]
    fn encode_of_decode_is_identity(v in value()) {
        let bytes = v.to_msgpack();
        let decoded = Value::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.to_msgpack(), bytes);
    }

    #[test]
    fn serde_agrees_with_the_native_codec(v in value()) {
        let bytes = v.to_msgpack();
        prop_assert_eq!(codec::to_msgpack(&v).ok(), Some(bytes.clone()));
        let native = Value::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let via_serde: Value = codec::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&native, &via_serde), "{native:?} != {via_serde:?}");
        let converted = to_value(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(converted.to_msgpack(), bytes);
    }

    #[test]
    fn text_forms_never_panic(v in value()) {
        let _ = v.to_string();
        let json = v.to_json();
        let _ = Value::from_json(json);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        check_decoding(&bytes)?;
        let _ = codec::from_msgpack::<Value>(&bytes);
        let _ = Event::from_msgpack(&bytes);
    }

    #[test]
    fn damaged_encodings_never_panic(v in value(), damage in damage()) {
        let bytes = damaged(v.to_msgpack(), &damage);
        check_decoding(&bytes)?;
        let _ = codec::from_msgpack::<Value>(&bytes);
        let _ = Event::from_msgpack(&bytes);
    }

    /// Reading the trace id in place agrees with decoding the headers, on string-keyed header maps
    /// with and without a `trace_id` (str or bin), and never panics on damaged bytes.
    #[test]
    fn peeking_the_trace_id_agrees_with_decoding(
        others in vec(("[a-z_]{0,12}", value()), 0..6),
        trace in prop_oneof![
            Just(None),
            "[0-9a-f]{32}".prop_map(|t| Some(Value::Str(t))),
            "[0-9a-f]{32}".prop_map(|t| Some(Value::Bin(t.into_bytes()))),
            value().prop_map(Some),
        ],
        at in any::<prop::sample::Index>(),
        damage in damage(),
    ) {
        let mut entries: Vec<(Value, Value)> = others.into_iter().map(|(k, v)| (Value::Str(k), v)).collect();
        if let Some(trace) = trace {
            entries.insert(at.index(entries.len() + 1), (Value::from("trace_id"), trace));
        }
        let bytes = Value::Map(entries).to_msgpack();
        let decoded = Value::from_msgpack(&bytes).ok().and_then(|v| Headers::from_value(v).ok());
        prop_assert_eq!(Headers::peek_trace_id(&bytes), decoded.as_ref().and_then(Headers::trace_id));
        let _ = Headers::peek_trace_id(&damaged(bytes, &damage));
    }

    #[test]
    fn arbitrary_frames_never_panic(frames in vec(vec(any::<u8>(), 0..64), 0..8)) {
        let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
        if let Ok(message) = Message::from_frames(&frames) {
            prop_assert!(Message::from_frames(&message.to_frames()).is_ok());
        }
    }

    #[test]
    fn plausible_frames_never_panic(
        id in "[0-9a-f]{32}",
        kind in prop_oneof![
            proptest::sample::select(&["REQ", "REP", "ACK", "NACK", "ERROR"][..]).prop_map(str::to_owned),
            "\\PC{0,6}",
        ],
        subject in "\\PC{0,20}",
        headers in prop_oneof![
            value().prop_map(|v| v.to_msgpack()),
            vec((text(), value()), 0..4).prop_map(|h| Value::map(h).to_msgpack()),
        ],
        body in value(),
        damage in proptest::option::of(damage()),
    ) {
        let body = body.to_msgpack();
        let body = match &damage {
            Some(damage) => damaged(body, damage),
            None => body,
        };
        let frames = [id.into_bytes(), kind.into_bytes(), subject.into_bytes(), headers, body]
            .map(Bytes::from);
        if let Ok(message) = Message::from_frames(&frames) {
            prop_assert!(Message::from_frames(&message.to_frames()).is_ok());
        }
    }

    #[test]
    fn plausible_events_never_panic(
        entries in vec(
            (
                prop_oneof![
                    proptest::sample::select(&["type", "headers", "body", "source"][..]).prop_map(Value::from),
                    value(),
                ],
                value(),
            ),
            0..6,
        ),
    ) {
        let bytes = Value::Map(entries).to_msgpack();
        if let Ok(event) = Event::from_msgpack(&bytes) {
            prop_assert!(Event::from_msgpack(&event.to_msgpack()).is_ok());
        }
    }
}

/// Near-misses of the formats lymph writes: a valid text with one character replaced or inserted.
fn near_miss() -> impl Strategy<Value = String> {
    let valid = proptest::sample::select(
        &[
            "2024-01-02T03:04:05+0130",
            "2024-01-02T03:04:05-013015.123456",
            "2024-01-02",
            "03:04:05Z",
            "-1.5E+3",
            "sNaN12",
            "12345678-1234-5678-1234-567812345678",
        ][..],
    );
    (valid, any::<usize>(), any::<char>(), any::<bool>()).prop_map(|(text, at, c, insert)| {
        let mut chars: Vec<char> = text.chars().collect();
        let at = at % (chars.len() + 1);
        if insert || at == chars.len() {
            chars.insert(at, c);
        } else {
            chars[at] = c;
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #[test]
    fn format_checks_never_panic(text in prop_oneof!["\\PC{0,40}", near_miss()]) {
        let _ = DateTime::new(text.as_str());
        let _ = Date::new(text.as_str());
        let _ = Time::new(text.as_str());
        let _ = Decimal::new(text.as_str());
        let _ = Uuid::new(text.as_str());
    }
}

// ---- typed values ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    name: String,
    count: i64,
    note: Option<String>,
    tags: Vec<String>,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    when: DateTime,
    day: Date,
    at: Time,
    price: Decimal,
    key: Uuid,
    labels: Set<String>,
}

fn datetime() -> impl Strategy<Value = DateTime> {
    let offset = proptest::option::of((prop_oneof![Just('+'), Just('-')], 0u32..24, 0u32..60));
    (1u32..=9999, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60, offset).prop_map(
        |(y, mo, d, h, mi, s, offset)| {
            let offset = offset.map(|(sign, oh, om)| format!("{sign}{oh:02}{om:02}")).unwrap_or_default();
            DateTime::new(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{offset}")).expect("a valid datetime")
        },
    )
}

fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (any::<i64>(), 0usize..6).prop_map(|(n, scale)| {
            let digits = n.unsigned_abs().to_string();
            let digits = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = digits.split_at(digits.len() - scale);
            let sign = if n < 0 { "-" } else { "" };
            if scale == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
        }),
        (any::<i32>(), any::<i16>()).prop_map(|(m, e)| format!("{m}E{e:+}")),
        proptest::sample::select(&["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"][..]).prop_map(str::to_owned),
    ]
    .prop_map(|text| Decimal::new(text).expect("a valid decimal"))
}

fn order() -> impl Strategy<Value = Order> {
    let uuid = any::<u128>().prop_map(|n| {
        let h = format!("{n:032x}");
        Uuid::new(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])).expect("a uuid")
    });
    let day = (1u32..=9999, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| Date::new(format!("{y:04}-{m:02}-{d:02}")).expect("a valid date"));
    let at = (0u32..24, 0u32..60, 0u32..60)
        .prop_map(|(h, m, s)| Time::new(format!("{h:02}:{m:02}:{s:02}Z")).expect("a valid time"));
    (
        (text(), any::<i64>(), proptest::option::of(text()), vec(text(), 0..4), vec(any::<u8>(), 0..40)),
        (datetime(), day, at, decimal(), uuid, vec(text(), 0..4)),
    )
        .prop_map(|((name, count, note, tags, blob), (when, day, at, price, key, labels))| Order {
            name,
            count,
            note,
            tags,
            blob,
            when,
            day,
            at,
            price,
            key,
            labels: Set(labels),
        })
}

proptest! {
    #[test]
    fn typed_round_trip(order in order()) {
        let bytes = codec::to_msgpack(&order).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Order = codec::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &order);

        let value = to_value(&order).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(value.to_msgpack(), bytes);
        prop_assert_eq!(&value["when"], &Value::from(order.when.clone()));
        prop_assert_eq!(&value["price"], &Value::Decimal(order.price.to_string()));
        prop_assert_eq!(&value["labels"], &Value::from(order.labels.clone()));
        prop_assert_eq!(&value["blob"], &Value::Bin(order.blob.clone()));
        prop_assert_eq!(&value["note"], &Value::from(order.note.clone()));
        let back: Order = from_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, order);
    }
}

#[test]
fn tagged_types_accept_either_key_order() -> Result<(), Box<dyn std::error::Error>> {
    let swapped = Value::map([("_", "2024-01-02"), ("__type__", "date")]);
    assert_eq!(from_value::<Date>(swapped)?.as_str(), "2024-01-02");
    let set = Value::map([("_", Value::from(vec![Value::from(1), Value::from(2)])), ("__type__", Value::from("set"))]);
    assert_eq!(from_value::<Set<i64>>(set)?, Set(vec![1, 2]));
    Ok(())
}

#[test]
fn tagged_types_reject_other_shapes() {
    let wrong_type = from_value::<Date>(Value::Uuid("12345678-1234-5678-1234-567812345678".into()));
    let message = wrong_type.expect_err("a UUID is not a date").to_string();
    assert!(message.contains("\"UUID\"") && message.contains("date"), "{message}");

    let bare = from_value::<Date>(Value::from("2024-01-02")).expect_err("a bare string is not a date");
    assert!(bare.to_string().contains("lymph tagged map"), "{bare}");

    let bad = from_value::<Date>(Value::Date("2024-02-30".into())).expect_err("not a real date");
    assert!(bad.to_string().contains("invalid date"), "{bad}");

    let missing = from_value::<Time>(Value::map([("__type__", "time")])).expect_err("no payload");
    assert!(missing.to_string().contains("missing field `_`"), "{missing}");

    let extra = Value::map([("__type__", "time"), ("_", "01:02:03Z"), ("x", "")]);
    assert!(from_value::<Time>(extra).is_err());
}
