//! A property-based fuzz of the ZMTP decoder, which every byte a ZeroMQ peer sends goes through:
//! the vendored `zeromq` crate's `ZmqCodec`, with `SocketOptions::max_message_size` set as
//! lymph-rs sets it on every socket it makes.
//!
//! Each family of inputs runs `LYMPH_FUZZ_CASES` cases (default [`DEFAULT_CASES`]) and prints how
//! many inputs it tried, shrinking included (`-- --nocapture` shows the counts). Every input is
//! decoded twice, whole and cut into pieces at random points, and both must give the same items.
//! What holds for every input:
//!
//! - the decoder never panics;
//! - its buffer's capacity stays below [`MAX_CAPACITY`], and an error reserves nothing: a frame
//!   whose declared length passes the limit is refused as its header arrives;
//! - a message it assembles takes at most the limit, counting `FRAME_OVERHEAD` per frame.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use asynchronous_codec::Decoder;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use zeromq::__bench::{Message, ZmqCodec, zmq_framed_read_with_options};
use zeromq::{FRAME_OVERHEAD, SocketOptions};

/// Cases per family unless `LYMPH_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 2000;
/// The message-size limit of most cases, 1 MiB.
const LIMIT: usize = 1 << 20;
/// The most the decoder's buffer may hold at any time: a frame at the limit, one read chunk
/// (64 KiB) of headroom, and what growth in powers of two may add to the small inputs used here.
const MAX_CAPACITY: usize = 3 << 20;
/// A frame flag: more frames of this message follow.
const MORE: u8 = 0x01;
/// A frame flag: an 8-byte length follows instead of a 1-byte one.
const LONG: u8 = 0x02;
/// A frame flag: the frame is a command.
const COMMAND: u8 = 0x04;

fn cases() -> u32 {
    std::env::var("LYMPH_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_CASES)
}

/// Runs `test` on `cases()` inputs from `strategy`, prints how many it tried, and panics with the
/// minimal failing input if one fails.
fn fuzz<S>(family: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
{
    let mut config = Config::with_cases(cases());
    let tried = AtomicUsize::new(0);
    // A failure prints its minimal input, which then becomes a plain #[test].
    config.failure_persistence = None;
    let result = TestRunner::new(config).run(&strategy, |input| {
        tried.fetch_add(1, Ordering::Relaxed);
        test(input)
    });
    eprintln!("zmtp fuzz: {family}: {} inputs", tried.load(Ordering::Relaxed));
    if let Err(error) = result {
        panic!("zmtp fuzz: {family}: {error}");
    }
}

/// What the decoder gave, in a form that can be compared.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Greeting,
    Command(String, Vec<(String, Bytes)>),
    Message(Vec<Bytes>),
    Error(String),
}

fn codec(limit: usize) -> ZmqCodec {
    let mut options = SocketOptions::default();
    options.max_message_size(limit);
    ZmqCodec::with_options(&options)
}

/// Checks an item against the limit and turns it into an [`Item`].
fn item(message: Message, limit: usize) -> Result<Item, TestCaseError> {
    Ok(match message {
        Message::Greeting(_) => Item::Greeting,
        Message::Command(command) => {
            let mut properties: Vec<(String, Bytes)> = command.properties.into_iter().collect();
            properties.sort();
            Item::Command(command.name.as_str().to_owned(), properties)
        }
        Message::Message(message) => {
            let frames: Vec<Bytes> = message.into_vecdeque().into();
            let size: usize = frames.iter().map(|frame| frame.len() + FRAME_OVERHEAD).sum();
            prop_assert!(size <= limit, "a message of {} frames takes {size} bytes, over {limit}", frames.len());
            Item::Message(frames)
        }
    })
}

/// Decodes `input` with one decoder, giving it the bytes in pieces cut at `cuts`, calling it
/// until it asks for more after each piece; stops at the first error.
fn decode(limit: usize, input: &[u8], cuts: &[Index]) -> Result<Vec<Item>, TestCaseError> {
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    let mut codec = codec(limit);
    let mut src = BytesMut::new();
    let mut items = Vec::new();
    let mut start = 0;
    for end in ends {
        src.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            let before = src.capacity();
            let result = codec.decode(&mut src);
            prop_assert!(src.capacity() <= MAX_CAPACITY, "the buffer holds {} bytes", src.capacity());
            match result {
                Ok(None) => break,
                Ok(Some(message)) => items.push(item(message, limit)?),
                Err(error) => {
                    prop_assert!(src.capacity() <= before, "an error reserved {} bytes", src.capacity() - before);
                    items.push(Item::Error(error.to_string()));
                    return Ok(items);
                }
            }
        }
    }
    Ok(items)
}

/// Decodes `input` whole and in pieces, checks both agree, and gives the items.
fn decode_both_ways(limit: usize, input: &[u8], cuts: &[Index]) -> Result<Vec<Item>, TestCaseError> {
    let whole = decode(limit, input, &[])?;
    let pieces = decode(limit, input, cuts)?;
    prop_assert_eq!(&pieces, &whole, "cut into pieces, the input decodes differently");
    Ok(whole)
}

// ---- inputs ---------------------------------------------------------------------------------

/// The greeting a ZMTP 3.0 peer with the NULL mechanism sends.
fn greeting() -> Vec<u8> {
    let mut greeting = vec![0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3;
    greeting[12..16].copy_from_slice(b"NULL");
    greeting
}

/// Appends one frame, in the long form when `long` or when the body needs it.
fn put_frame(out: &mut Vec<u8>, flags: u8, body: &[u8], long: bool) {
    if long || body.len() > 255 {
        out.push(flags | LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(body.len() as u8);
    }
    out.extend_from_slice(body);
}

/// One frame of a message: its body and whether it is written in the long form.
type Frame = (Vec<u8>, bool);

fn frame() -> impl Strategy<Value = Frame> {
    let body = prop_oneof![
        4 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 250..300),
    ];
    (body, any::<bool>())
}

/// Messages of one to four frames.
fn messages() -> impl Strategy<Value = Vec<Vec<Frame>>> {
    vec(vec(frame(), 1..5), 0..5)
}

fn put_messages(out: &mut Vec<u8>, messages: &[Vec<Frame>]) {
    for message in messages {
        for (at, (body, long)) in message.iter().enumerate() {
            let flags = if at + 1 < message.len() { MORE } else { 0 };
            put_frame(out, flags, body, *long);
        }
    }
}

/// What the decoder must give for a greeting followed by `messages`, under `limit`.
fn expected(limit: usize, messages: &[Vec<Frame>]) -> Vec<Item> {
    let mut items = vec![Item::Greeting];
    for message in messages {
        let mut size = 0;
        for (body, _) in message {
            size += body.len() + FRAME_OVERHEAD;
            if size > limit {
                items.push(Item::Error("Message exceeds the maximum message size".into()));
                return items;
            }
        }
        items.push(Item::Message(message.iter().map(|(body, _)| Bytes::copy_from_slice(body)).collect()));
    }
    items
}

/// A limit: mostly 1 MiB, often small enough for the inputs here to reach it.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(LIMIT),
        1 => 0usize..2048,
    ]
}

/// Ways to damage an input.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Replace(Index, u8),
    Insert(Index, u8),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    vec(
        prop_oneof![
            any::<Index>().prop_map(Damage::Truncate),
            (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Replace(at, b)),
            (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
        ],
        1..4,
    )
}

fn damaged(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        match d {
            Damage::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
            Damage::Replace(at, b) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] = *b;
            }
            Damage::Replace(..) => {}
            Damage::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), *b),
        }
    }
    bytes
}

/// Arbitrary bytes, alone or after a greeting, intact or damaged.
fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
    let noise = vec(any::<u8>(), 0..2048);
    prop_oneof![
        noise.clone(),
        noise.clone().prop_map(|noise| [greeting(), noise].concat()),
        (damage(), noise).prop_map(|(damage, noise)| [damaged(greeting(), &damage), noise].concat()),
    ]
}

/// A greeting and well-formed messages, then damaged, with arbitrary bytes after them.
fn damaged_input() -> impl Strategy<Value = Vec<u8>> {
    (messages(), damage(), vec(any::<u8>(), 0..64)).prop_map(|(messages, damage, noise)| {
        let mut input = Vec::new();
        put_messages(&mut input, &messages);
        [greeting(), damaged(input, &damage), noise].concat()
    })
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..8)
}

/// Declared frame lengths: anything, the edges of the limit and of the address space.
fn declared_length() -> impl Strategy<Value = u64> {
    let limit = LIMIT as u64;
    let overhead = FRAME_OVERHEAD as u64;
    prop_oneof![
        any::<u64>(),
        Just(u64::MAX),
        Just(isize::MAX as u64),
        Just(isize::MAX as u64 + 1),
        Just(1 << 40),
        (limit - overhead - 700..limit - overhead + 64),
        (0u64..4 << 20),
        (u64::MAX - (1 << 20)..=u64::MAX),
    ]
}

/// A command's body: a name (READY, near misses, anything), its length byte (right or not), and
/// properties, well-formed or damaged.
#[derive(Debug, Clone)]
struct CommandBody {
    name: Vec<u8>,
    name_len: Option<u8>,
    properties: Vec<(Vec<u8>, Vec<u8>)>,
    damage: Option<Vec<Damage>>,
}

impl CommandBody {
    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![self.name_len.unwrap_or(self.name.len() as u8)];
        out.extend_from_slice(&self.name);
        let mut properties = Vec::new();
        for (name, value) in &self.properties {
            properties.push(name.len() as u8);
            properties.extend_from_slice(name);
            properties.extend_from_slice(&(value.len() as u32).to_be_bytes());
            properties.extend_from_slice(value);
        }
        match &self.damage {
            Some(damage) => out.extend(damaged(properties, damage)),
            None => out.extend(properties),
        }
        out
    }
}

fn command_body() -> impl Strategy<Value = CommandBody> {
    let near_ready = (any::<Index>(), any::<u8>()).prop_map(|(at, b)| {
        let mut name = b"READY".to_vec();
        name[at.index(5)] = b;
        name
    });
    let name = prop_oneof![
        Just(b"READY".to_vec()),
        near_ready,
        "[A-Z]{0,10}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..12),
    ];
    let property_name = prop_oneof!["[A-Za-z-]{0,12}".prop_map(String::into_bytes), vec(any::<u8>(), 0..12)];
    (
        name,
        prop_oneof![3 => Just(None), 1 => any::<u8>().prop_map(Some)],
        vec((property_name, vec(any::<u8>(), 0..24)), 0..4),
        proptest::option::weighted(0.25, damage()),
    )
        .prop_map(|(name, name_len, properties, damage)| CommandBody { name, name_len, properties, damage })
}

// ---- properties -----------------------------------------------------------------------------

#[test]
fn arbitrary_bytes() {
    fuzz("arbitrary bytes", (limit(), arbitrary_input(), cuts()), |(limit, input, cuts)| {
        decode_both_ways(limit, &input, &cuts)?;
        Ok(())
    });
}

/// Well-formed messages decode as written, up to the first one over the limit; damaged, they
/// still never panic nor pass the bounds.
#[test]
fn greeting_then_damaged_frames() {
    fuzz(
        "greeting then damaged frames",
        (limit(), messages(), proptest::option::of(damage()), cuts()),
        |(limit, messages, damage, cuts)| {
            let mut frames = Vec::new();
            put_messages(&mut frames, &messages);
            match damage {
                None => {
                    let items = decode_both_ways(limit, &[greeting(), frames].concat(), &cuts)?;
                    prop_assert_eq!(items, expected(limit, &messages));
                }
                Some(damage) => {
                    decode_both_ways(limit, &[greeting(), damaged(frames, &damage)].concat(), &cuts)?;
                }
            }
            Ok(())
        },
    );
}

/// A long header (data or command, with or without MORE) declaring up to `u64::MAX` bytes, after
/// whole messages and perhaps a first frame of its own message: refused as soon as its 8 length
/// bytes are in when the message would pass the limit, before any body byte arrives; otherwise
/// the decoder waits for the body.
#[test]
fn long_length_headers() {
    let strategy = (
        limit(),
        vec(vec(frame(), 1..3), 0..3),
        proptest::option::of(vec(any::<u8>(), 0..600)),
        proptest::sample::select(&[LONG, LONG | MORE, LONG | COMMAND, LONG | COMMAND | MORE][..]),
        declared_length(),
        vec(any::<u8>(), 0..32),
        cuts(),
    );
    fuzz("long length headers", strategy, |(limit, before, pending, flags, length, tail, cuts)| {
        let mut input = greeting();
        put_messages(&mut input, &before);
        let mut want = expected(limit, &before);
        if matches!(want.last(), Some(Item::Error(_))) {
            prop_assert_eq!(decode_both_ways(limit, &input, &cuts)?, want);
            return Ok(());
        }
        let mut so_far = 0u128;
        if let Some(pending) = &pending {
            put_frame(&mut input, MORE, pending, false);
            so_far = (pending.len() + FRAME_OVERHEAD) as u128;
        }
        input.push(flags);
        input.extend_from_slice(&length.to_be_bytes());
        let header_end = input.len();
        input.extend_from_slice(&tail);

        let items = decode_both_ways(limit, &input, &cuts)?;
        if so_far > limit as u128 {
            want.push(Item::Error("Message exceeds the maximum message size".into()));
            prop_assert_eq!(items, want);
        } else if so_far + u128::from(length) + FRAME_OVERHEAD as u128 > limit as u128 {
            // Refused from the header alone: the same with no body byte sent.
            prop_assert!(matches!(items.last(), Some(Item::Error(_))), "{items:?}");
            prop_assert_eq!(&decode_both_ways(limit, &input[..header_end], &cuts)?, &items);
        } else if length > tail.len() as u64 {
            // Within the limit and not all there: waiting for the rest.
            prop_assert_eq!(items, want);
        }
        Ok(())
    });
}

/// Empty frames with MORE set each count `FRAME_OVERHEAD`: frame k of a message is refused
/// exactly when k * FRAME_OVERHEAD passes the limit.
#[test]
fn empty_frames_with_more() {
    // Frame counts around the most the limit allows, and anywhere up to 400.
    let around = prop_oneof![-2isize..=2, -400isize..400];
    let strategy = (0usize..300, 0usize..FRAME_OVERHEAD, around, any::<bool>(), any::<bool>(), cuts());
    fuzz("empty frames with MORE", strategy, |(allowed, slack, around, last, long, cuts)| {
        let limit = allowed * FRAME_OVERHEAD + slack;
        let count = allowed.saturating_add_signed(around);
        let mut input = greeting();
        for _ in 0..count {
            put_frame(&mut input, MORE, &[], long);
        }
        if last {
            put_frame(&mut input, 0, &[], long);
        }
        let frames = count + usize::from(last);
        let mut want = vec![Item::Greeting];
        if frames > allowed {
            want.push(Item::Error("Message exceeds the maximum message size".into()));
        } else if last {
            want.push(Item::Message(vec![Bytes::new(); frames]));
        }
        prop_assert_eq!(decode_both_ways(limit, &input, &cuts)?, want);
        Ok(())
    });
}

/// Commands with bad names are errors; READY with well-formed properties decodes to them;
/// nothing else panics.
#[test]
fn commands() {
    let strategy = (limit(), command_body(), any::<bool>(), cuts());
    fuzz("commands", strategy, |(limit, command, long, cuts)| {
        let body = command.bytes();
        let mut input = greeting();
        put_frame(&mut input, COMMAND, &body, long);
        let items = decode_both_ways(limit, &input, &cuts)?;
        prop_assert_eq!(&items[0], &Item::Greeting);
        let name_ok = command.name_len.is_none_or(|len| usize::from(len) == command.name.len());
        if body.len() + FRAME_OVERHEAD > limit {
            prop_assert_eq!(&items[1..], &[Item::Error("Message exceeds the maximum message size".into())]);
        } else if name_ok && command.name != b"READY" {
            prop_assert!(matches!(&items[1..], [Item::Error(_)]), "{items:?}");
        } else if name_ok && command.damage.is_none() {
            let mut want = HashMap::new();
            let mut utf8 = true;
            for (name, value) in &command.properties {
                match String::from_utf8(name.clone()) {
                    Ok(name) => {
                        want.insert(name, Bytes::copy_from_slice(value));
                    }
                    Err(_) => utf8 = false,
                }
            }
            if utf8 {
                let mut want: Vec<_> = want.into_iter().collect();
                want.sort();
                prop_assert_eq!(&items[1..], &[Item::Command("READY".into(), want)]);
            } else {
                prop_assert!(matches!(&items[1..], [Item::Error(_)]), "{items:?}");
            }
        }
        if let Some(Item::Command(..)) = items.get(1) {
            prop_assert!(body.starts_with(b"\x05READY"), "{body:?} decoded as a command");
        }
        Ok(())
    });
}

/// Bytes a [`Pieces`] reader gives out, a piece per read at most.
struct Pieces(VecDeque<Vec<u8>>);

impl futures::AsyncRead for Pieces {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Some(piece) = self.0.front_mut() else { return Poll::Ready(Ok(0)) };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        piece.drain(..n);
        if piece.is_empty() {
            self.0.pop_front();
        }
        Poll::Ready(Ok(n))
    }
}

/// The socket's reader (adaptive read buffer, decoder) gives what the decoder alone gives, read
/// in pieces; at the end of the stream it may add an error for a frame left incomplete.
#[test]
fn framed_reader() {
    let input = prop_oneof![arbitrary_input(), damaged_input()];
    fuzz("framed reader", (limit(), input, cuts()), |(limit, input, cuts)| {
        let want = decode_both_ways(limit, &input, &cuts)?;
        let mut ends: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
        ends.push(input.len());
        ends.sort_unstable();
        let mut start = 0;
        let mut pieces = VecDeque::new();
        for end in ends {
            if end > start {
                pieces.push_back(input[start..end].to_vec());
            }
            start = end;
        }
        let mut options = SocketOptions::default();
        options.max_message_size(limit);
        let mut reader = zmq_framed_read_with_options(Pieces(pieces), Arc::new(options));
        let items = futures::executor::block_on(async {
            let mut items = Vec::new();
            while let Some(next) = reader.next().await {
                match next {
                    Ok(message) => items.push(item(message, limit)?),
                    Err(error) => {
                        items.push(Item::Error(error.to_string()));
                        break;
                    }
                }
            }
            Ok::<_, TestCaseError>(items)
        })?;
        let ended_in_error = matches!(want.last(), Some(Item::Error(_)));
        match items.split_last() {
            Some((Item::Error(error), rest)) if !ended_in_error && rest == want.as_slice() => {
                prop_assert_eq!(error.as_str(), "bytes remaining in stream");
            }
            _ => prop_assert_eq!(items, want),
        }
        Ok(())
    });
}

// ---- the same at scale, once --------------------------------------------------------------------

/// At the 1 MiB limit, a message of 16,384 empty frames is taken and frame 16,385 is refused.
#[test]
fn a_mebibyte_of_empty_frames_is_the_most_one_message_takes() {
    let allowed = LIMIT / FRAME_OVERHEAD;
    let mut input = greeting();
    for _ in 0..allowed - 1 {
        put_frame(&mut input, MORE, &[], false);
    }
    let mut taken = input.clone();
    put_frame(&mut taken, 0, &[], false);
    let items = decode(LIMIT, &taken, &[]).expect("within the bounds");
    assert_eq!(items, [Item::Greeting, Item::Message(vec![Bytes::new(); allowed])]);

    put_frame(&mut input, MORE, &[], false);
    put_frame(&mut input, 0, &[], false);
    let items = decode(LIMIT, &input, &[]).expect("within the bounds");
    assert_eq!(items, [Item::Greeting, Item::Error("Message exceeds the maximum message size".into())]);
}

/// A frame of exactly the limit, less its overhead, is taken; one byte more is refused.
#[test]
fn a_frame_at_the_limit_is_taken_and_one_byte_more_is_not() {
    let body = vec![7u8; LIMIT - FRAME_OVERHEAD];
    let mut input = greeting();
    put_frame(&mut input, 0, &body, true);
    let items = decode(LIMIT, &input, &[]).expect("within the bounds");
    assert_eq!(items, [Item::Greeting, Item::Message(vec![Bytes::from(body.clone())])]);

    let mut input = greeting();
    input.push(LONG);
    input.extend_from_slice(&((LIMIT - FRAME_OVERHEAD + 1) as u64).to_be_bytes());
    let items = decode(LIMIT, &input, &[]).expect("within the bounds");
    assert_eq!(items, [Item::Greeting, Item::Error("Message exceeds the maximum message size".into())]);
}
