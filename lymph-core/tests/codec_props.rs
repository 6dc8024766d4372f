//! Property tests of the msgpack codec: round trips, agreement between the native encoder and the
//! serde path, typed round trips, and no panics on arbitrary input: arbitrary and damaged bytes,
//! damaged events and message frames, and nesting up to and past `MAX_DEPTH` (100,000 levels
//! included) through every decoder that reads untrusted bytes.
//!
//! Each property runs `LYMPH_FUZZ_CASES` cases (256 unless set).

use bytes::Bytes;
use lymph_core::codec::{DecodeError, MAX_DEPTH};
use lymph_core::message::FrameError;
use lymph_core::types::{Date, DateTime, Decimal, Set, Time, Uuid};
use lymph_core::value::{from_value, to_value};
use lymph_core::{Event, Headers, Message, Value, codec};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Cases per property unless `LYMPH_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

/// Every property runs `LYMPH_FUZZ_CASES` cases, [`DEFAULT_CASES`] by default.
fn fuzz_config() -> ProptestConfig {
    let cases = std::env::var("LYMPH_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_CASES);
    ProptestConfig::with_cases(cases)
}

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
    #![proptest_config(fuzz_config())]

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

// ---- untrusted input: damaged events and frames, deep nesting -------------------------------

fn event() -> impl Strategy<Value = Event> {
    ("\\PC{0,20}", vec(("[a-z_]{0,12}", value()), 0..4), value(), "\\PC{0,20}").prop_map(
        |(event_type, headers, body, source)| {
            let mut event = Event::new(event_type, body, None);
            event.headers = Headers::new();
            for (key, value) in headers {
                event.headers.insert(key, value);
            }
            event.source = source;
            event
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    (
        "[0-9a-f]{32}",
        proptest::sample::select(&["REQ", "REP", "ACK", "NACK", "ERROR"][..]),
        "\\PC{0,20}",
        vec(("[a-z_]{0,12}", value()), 0..4),
        value(),
    )
        .prop_map(|(id, kind, subject, entries, body)| {
            let mut headers = Headers::new();
            for (key, value) in entries {
                headers.insert(key, value);
            }
            Message { id, kind: kind.parse().expect("a kind"), subject, headers, body: Bytes::from(body.to_msgpack()) }
        })
}

/// Ways to damage a message's frames.
#[derive(Debug, Clone)]
enum FrameDamage {
    Bytes(prop::sample::Index, Vec<Damage>),
    Drop(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    Append(Vec<u8>),
}

fn frame_damage() -> impl Strategy<Value = Vec<FrameDamage>> {
    use prop::sample::Index;
    vec(
        prop_oneof![
            6 => (any::<Index>(), damage()).prop_map(|(at, damage)| FrameDamage::Bytes(at, damage)),
            1 => any::<Index>().prop_map(FrameDamage::Drop),
            1 => any::<Index>().prop_map(FrameDamage::Duplicate),
            2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| FrameDamage::Swap(a, b)),
            1 => vec(any::<u8>(), 0..8).prop_map(FrameDamage::Append),
        ],
        1..3,
    )
}

fn damaged_frames(frames: Vec<Bytes>, damage: &[FrameDamage]) -> Vec<Bytes> {
    let mut frames: Vec<Vec<u8>> = frames.into_iter().map(Vec::from).collect();
    for d in damage {
        let len = frames.len();
        match d {
            FrameDamage::Bytes(at, damage) if len > 0 => {
                let at = at.index(len);
                frames[at] = damaged(std::mem::take(&mut frames[at]), damage);
            }
            FrameDamage::Drop(at) if len > 0 => drop(frames.remove(at.index(len))),
            FrameDamage::Duplicate(at) if len > 0 => {
                let at = at.index(len);
                frames.insert(at, frames[at].clone());
            }
            FrameDamage::Swap(a, b) if len > 0 => frames.swap(a.index(len), b.index(len)),
            FrameDamage::Append(frame) => frames.push(frame.clone()),
            _ => {}
        }
    }
    frames.into_iter().map(Bytes::from).collect()
}

/// Whether `frames` are a lymph message, checked field by field.
fn is_message(frames: &[Bytes]) -> bool {
    let [id, kind, subject, headers, body] = frames else { return false };
    let kind = std::str::from_utf8(kind).ok();
    std::str::from_utf8(id).is_ok()
        && kind.is_some_and(|kind| ["REQ", "REP", "ACK", "NACK", "ERROR"].contains(&kind))
        && std::str::from_utf8(subject).is_ok()
        && Value::from_msgpack(headers).is_ok_and(|headers| match headers {
            Value::Map(entries) => entries.iter().all(|(key, _)| match key {
                Value::Str(_) => true,
                Value::Bin(key) => std::str::from_utf8(key).is_ok(),
                _ => false,
            }),
            _ => false,
        })
        && codec::validate(body).is_ok()
}

/// One level of nesting: the containers msgpack has, in each position a value can take.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// `[x]` as a fixarray, an array 16 and an array 32.
    Array,
    Array16,
    Array32,
    /// `{"k": x}` as a fixmap and a map 16.
    MapValue,
    Map16,
    /// `{x: nil}`.
    MapKey,
    /// lymph's tagged set, `{"__type__": "set", "_": [x]}`: two levels.
    Set,
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        4 => Just(Level::Array),
        1 => Just(Level::Array16),
        1 => Just(Level::Array32),
        2 => Just(Level::MapValue),
        1 => Just(Level::Map16),
        2 => Just(Level::MapKey),
        1 => Just(Level::Set),
    ]
}

/// `leaf` inside `levels`, outermost first, and how many containers deep the whole nests.
fn nested(levels: &[Level], leaf: &[u8], leaf_depth: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::with_capacity(levels.len() * 16 + leaf.len());
    let mut closing = Vec::new();
    let mut depth = leaf_depth;
    for level in levels {
        depth += 1;
        match level {
            Level::Array => bytes.push(0x91),
            Level::Array16 => bytes.extend_from_slice(&[0xdc, 0, 1]),
            Level::Array32 => bytes.extend_from_slice(&[0xdd, 0, 0, 0, 1]),
            Level::MapValue => bytes.extend_from_slice(&[0x81, 0xa1, b'k']),
            Level::Map16 => bytes.extend_from_slice(&[0xde, 0, 1, 0xa1, b'k']),
            Level::MapKey => {
                bytes.push(0x81);
                closing.push(0xc0);
            }
            Level::Set => {
                depth += 1;
                bytes.extend_from_slice(b"\x82\xa8__type__\xa3set\xa1_\x91");
            }
        }
    }
    bytes.extend_from_slice(leaf);
    bytes.extend(closing.iter().rev());
    (bytes, depth)
}

/// How many containers deep a value's encoding nests (a tagged map counts as the map it is).
fn containers(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(containers).max().unwrap_or(0),
        Value::Set(items) => 2 + items.iter().map(containers).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.iter().map(|(k, v)| containers(k).max(containers(v))).max().unwrap_or(0),
        Value::DateTime(_)
        | Value::Date(_)
        | Value::Time(_)
        | Value::Decimal(_)
        | Value::Uuid(_)
        | Value::Undefined => 1,
        _ => 0,
    }
}

/// `{"type": "t", "body": body}`.
fn event_with_body(body: &[u8]) -> Vec<u8> {
    [&b"\x82\xa4type\xa1t\xa4body"[..], body].concat()
}

/// `{"h": value, "trace_id": "t"}`.
fn headers_with(value: &[u8]) -> Vec<u8> {
    [&b"\x82\xa1h"[..], value, b"\xa8trace_id\xa1t"].concat()
}

fn frames_with(headers: Vec<u8>, body: Vec<u8>) -> [Bytes; 5] {
    [Bytes::from_static(b"0123456789abcdef0123456789abcdef"), Bytes::from_static(b"REQ"), Bytes::from_static(b"a.b")]
        .into_iter()
        .chain([Bytes::from(headers), Bytes::from(body)])
        .collect::<Vec<_>>()
        .try_into()
        .expect("five frames")
}

/// What every decoder of untrusted bytes gives for `bytes`, nesting `depth` containers deep:
/// the value where it is at most [`MAX_DEPTH`] deep, `TooDeep` where it is deeper.
fn check_nesting(bytes: &[u8], depth: usize) -> Result<(), TestCaseError> {
    let fits = |extra: usize| depth + extra <= MAX_DEPTH;
    if fits(0) {
        prop_assert!(codec::validate(bytes).is_ok());
        let value = Value::from_msgpack(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(codec::from_msgpack::<Value>(bytes).is_ok_and(|v| v.to_msgpack() == value.to_msgpack()));
        prop_assert_eq!(containers(&value), depth);
        let _ = (value.to_string(), value.to_json());
    } else {
        prop_assert_eq!(codec::validate(bytes), Err(DecodeError::TooDeep));
        prop_assert_eq!(Value::from_msgpack(bytes), Err(DecodeError::TooDeep));
        prop_assert_eq!(codec::from_msgpack::<Value>(bytes), Err(DecodeError::TooDeep));
    }
    // In an event's body, a message's body and its headers: one level deeper for the event and
    // the headers, which are maps.
    let event = Event::from_msgpack(&event_with_body(bytes));
    if fits(1) {
        prop_assert!(event.is_ok(), "{event:?}");
    } else {
        prop_assert_eq!(event, Err(FrameError::Msgpack(DecodeError::TooDeep)));
    }
    let in_body = Message::from_frames(&frames_with(b"\x80".to_vec(), bytes.to_vec()));
    prop_assert_eq!(in_body.is_ok(), fits(0), "{:?}", in_body);
    let headers = headers_with(bytes);
    prop_assert_eq!(Headers::peek_trace_id(&headers), fits(1).then_some("t"));
    let in_headers = Message::from_frames(&frames_with(headers, b"\xc0".to_vec()));
    if fits(1) {
        prop_assert!(in_headers.is_ok_and(|m| m.headers.trace_id() == Some("t")));
    } else {
        prop_assert_eq!(in_headers, Err(FrameError::Msgpack(DecodeError::TooDeep)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// A valid event decodes as written; damaged, it never panics, and what decodes is valid
    /// msgpack and an event that encodes and decodes to itself.
    #[test]
    fn damaged_events(event in event(), damage in proptest::option::of(damage())) {
        let bytes = event.to_msgpack();
        let Some(damage) = damage else {
            let decoded = Event::from_msgpack(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded.to_msgpack(), bytes);
            return Ok(());
        };
        let bytes = damaged(bytes, &damage);
        if let Ok(decoded) = Event::from_msgpack(&bytes) {
            prop_assert!(codec::validate(&bytes).is_ok());
            let again = Event::from_msgpack(&decoded.to_msgpack()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.to_msgpack(), decoded.to_msgpack());
        }
    }

    /// A message's frames parse as written; with frames damaged, dropped, duplicated, swapped or
    /// added, parsing never panics and succeeds exactly when each of the five frames is right,
    /// giving back those frames.
    #[test]
    fn damaged_message_frames(message in message(), damage in proptest::option::of(frame_damage())) {
        let frames = message.to_frames();
        let frames = match &damage {
            Some(damage) => damaged_frames(frames, damage),
            None => frames,
        };
        let parsed = Message::from_frames(&frames);
        prop_assert_eq!(parsed.is_ok(), is_message(&frames), "{:?}", parsed);
        if damage.is_none() {
            prop_assert!(parsed.is_ok());
        }
        if let Ok(parsed) = parsed {
            let again = parsed.to_frames();
            prop_assert_eq!(&again[..3], &frames[..3]);
            prop_assert_eq!(&again[4], &frames[4]);
            let reparsed = Message::from_frames(&again).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(reparsed.to_frames(), again);
        }
    }

    /// Values nested in every kind of container, around [`MAX_DEPTH`] and up to twice as deep,
    /// decode where they fit and are `TooDeep` where they do not, whichever decoder reads them.
    #[test]
    fn nesting_is_limited_everywhere(
        levels in prop_oneof![
            3 => vec(level(), MAX_DEPTH - 12..MAX_DEPTH + 4),
            1 => vec(level(), 0..2 * MAX_DEPTH),
        ],
        leaf in value(),
    ) {
        let (bytes, depth) = nested(&levels, &leaf.to_msgpack(), containers(&leaf));
        check_nesting(&bytes, depth)?;
    }
}

/// Runs `test` on a thread with the stack a tokio worker has (2 MiB), where lymph-rs decodes.
fn on_a_worker_stack(test: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(2 << 20).spawn(test).expect("a thread").join().expect("no panic");
}

/// 100,000 nested containers of each kind are refused as too deep, not a stack overflow.
#[test]
fn nesting_bombs_are_errors() {
    on_a_worker_stack(|| {
        let kinds =
            [Level::Array, Level::Array16, Level::Array32, Level::MapValue, Level::Map16, Level::MapKey, Level::Set];
        for kind in kinds {
            let (bytes, depth) = nested(&vec![kind; 100_000], b"\xc0", 0);
            check_nesting(&bytes, depth).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        }
        let mixed: Vec<Level> = kinds.iter().copied().cycle().take(100_000).collect();
        let (bytes, depth) = nested(&mixed, b"\xc0", 0);
        check_nesting(&bytes, depth).unwrap_or_else(|e| panic!("mixed: {e}"));
    });
}

/// The deepest values allowed decode, print and encode on a worker's stack, by every decoder.
#[test]
fn the_deepest_values_allowed_fit_on_a_worker_stack() {
    on_a_worker_stack(|| {
        for kind in [Level::Array, Level::Array32, Level::MapValue, Level::MapKey, Level::Set] {
            let levels = if matches!(kind, Level::Set) { MAX_DEPTH / 2 } else { MAX_DEPTH };
            let (bytes, depth) = nested(&vec![kind; levels], b"\xc0", 0);
            assert_eq!(depth, MAX_DEPTH);
            check_nesting(&bytes, depth).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let (bytes, depth) = nested(&vec![kind; levels + 1], b"\xc0", 0);
            check_nesting(&bytes, depth).unwrap_or_else(|e| panic!("{kind:?}, one more: {e}"));
        }
    });
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
    #![proptest_config(fuzz_config())]

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
    #![proptest_config(fuzz_config())]

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
