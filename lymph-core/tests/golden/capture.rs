//! Parsers for the hex dumps in the capture files.
//!
//! Three layouts occur:
//!
//! - ZeroMQ messages (`zmq_*.txt`): a line `  5 frames` (as sent by a DEALER) or `  6 frames` (as
//!   received by a ROUTER, frame 0 being the source), then for each frame a header
//!   `  frame[3] headers (53 bytes)` followed by hex lines `    0000  82 a7 …  |..version|`.
//! - Event bodies (`amqp_event.txt`): `body (148 bytes):` followed by hex lines.
//! - ZMTP traffic (`zmtp_raw.txt`): `  MESSAGE (5 frames)`, then for each frame
//!   `   frame 0: flags=0x01 (MORE) size=32` followed by hex lines of the whole ZMTP frame: flags,
//!   length (one byte, or eight with the LONG flag) and payload.
//!
//! Each parser checks the offsets of the hex lines and the declared lengths, and fails on an
//! incomplete block, so that a dump it misreads cannot pass unnoticed.

use crate::Result;

/// One ZeroMQ message as captured.
#[derive(Debug, Clone)]
pub(crate) struct CapturedMessage {
    /// The line (1-based) where the message starts, for error messages.
    pub(crate) line: usize,
    /// The frames: 5 as sent, or 6 as received with the source first.
    pub(crate) frames: Vec<Vec<u8>>,
}

impl CapturedMessage {
    /// The sender's endpoint, for a message as received.
    pub(crate) fn source(&self) -> Option<&str> {
        match self.frames.len() {
            6 => std::str::from_utf8(&self.frames[0]).ok(),
            _ => None,
        }
    }

    /// The five lymph frames `[id, type, subject, headers, body]`.
    pub(crate) fn lymph_frames(&self) -> Vec<bytes::Bytes> {
        let skip = self.frames.len().saturating_sub(5);
        self.frames[skip..].iter().map(|f| bytes::Bytes::copy_from_slice(f)).collect()
    }
}

/// The bytes of a hex dump line whose offset column is `offset`, or `None` if `line` is not one.
fn hex_line(line: &str, offset: usize) -> Option<Vec<u8>> {
    let is_hex = |t: &str, len: usize| t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit());
    let mut tokens = line.split_whitespace();
    let first = tokens.next()?;
    if !is_hex(first, 4) || usize::from_str_radix(first, 16).ok()? != offset {
        return None;
    }
    let bytes: Vec<u8> = tokens
        .take_while(|t| is_hex(t, 2))
        .map(|t| u8::from_str_radix(t, 16))
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    (!bytes.is_empty()).then_some(bytes)
}

/// A block of `len` bytes being read from hex lines.
#[derive(Debug)]
struct Block {
    len: usize,
    bytes: Vec<u8>,
}

impl Block {
    fn new(len: usize) -> Self {
        Self { len, bytes: Vec::with_capacity(len) }
    }

    fn is_complete(&self) -> bool {
        self.bytes.len() == self.len
    }

    /// Takes `line` if it is the next hex line of this block.
    fn feed(&mut self, line: &str, number: usize) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        if let Some(bytes) = hex_line(line, self.bytes.len()) {
            self.bytes.extend_from_slice(&bytes);
            if self.bytes.len() > self.len {
                return Err(format!("line {number}: more than the declared {} bytes", self.len).into());
            }
        }
        Ok(())
    }
}

/// The number in `text` between the last `prefix` and the `suffix` after it.
fn number_between(text: &str, prefix: &str, suffix: &str) -> Option<usize> {
    let start = text.rfind(prefix)? + prefix.len();
    let rest = &text[start..];
    rest[..rest.find(suffix)?].trim().parse().ok()
}

/// All ZeroMQ messages of a `zmq_*.txt` capture.
pub(crate) fn zmq_messages(text: &str) -> Result<Vec<CapturedMessage>> {
    let mut messages = Vec::new();
    let mut current: Option<(usize, CapturedMessage, Vec<Block>)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if let Some(count) = trimmed.strip_suffix(" frames").and_then(|n| n.parse::<usize>().ok()) {
            if let Some((_, message, _)) = &current {
                return Err(format!("line {number}: message of line {} is incomplete", message.line).into());
            }
            current = Some((count, CapturedMessage { line: number, frames: Vec::new() }, Vec::new()));
            continue;
        }
        let Some((count, message, blocks)) = current.as_mut() else {
            if trimmed.starts_with("frame[") {
                return Err(format!("line {number}: frame outside a message").into());
            }
            continue;
        };
        if trimmed.starts_with("frame[") {
            let index = number_between(trimmed, "frame[", "]").ok_or(format!("line {number}: bad frame header"))?;
            let len = number_between(trimmed, "(", " bytes)").ok_or(format!("line {number}: bad frame length"))?;
            if index != blocks.len() || blocks.last().is_some_and(|b| !b.is_complete()) {
                return Err(format!("line {number}: frame {index} out of order").into());
            }
            blocks.push(Block::new(len));
        } else if let Some(block) = blocks.last_mut() {
            block.feed(line, number)?;
        }
        if blocks.len() == *count && blocks.iter().all(Block::is_complete) {
            message.frames = blocks.drain(..).map(|b| b.bytes).collect();
            messages.push(message.clone());
            current = None;
        }
    }
    match current {
        Some((_, message, _)) => Err(format!("message of line {} is incomplete", message.line).into()),
        None => Ok(messages),
    }
}

/// All event bodies (`body (N bytes):` blocks) of `amqp_event.txt`.
pub(crate) fn event_bodies(text: &str) -> Result<Vec<Vec<u8>>> {
    let mut bodies = Vec::new();
    let mut current: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.starts_with("body (") && trimmed.ends_with(" bytes):") {
            if current.is_some() {
                return Err(format!("line {number}: previous body is incomplete").into());
            }
            let len = number_between(trimmed, "(", " bytes)").ok_or(format!("line {number}: bad body length"))?;
            current = Some(Block::new(len));
            continue;
        }
        if let Some(block) = current.as_mut() {
            block.feed(line, number)?;
            if block.is_complete() {
                bodies.extend(current.take().map(|b| b.bytes));
            }
        }
    }
    match current {
        Some(_) => Err("the last body is incomplete".into()),
        None => Ok(bodies),
    }
}

/// All messages of `zmtp_raw.txt`, each frame's payload with the ZMTP flags and length removed.
pub(crate) fn zmtp_messages(text: &str) -> Result<Vec<Vec<Vec<u8>>>> {
    struct Frame {
        flags: u8,
        size: usize,
        block: Block,
    }
    let mut messages = Vec::new();
    let mut current: Option<(usize, Vec<Frame>)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.starts_with("MESSAGE (") {
            if current.is_some() {
                return Err(format!("line {number}: previous message is incomplete").into());
            }
            let count = number_between(trimmed, "(", " frames)").ok_or(format!("line {number}: bad message"))?;
            current = Some((count, Vec::new()));
            continue;
        }
        let Some((count, frames)) = current.as_mut() else { continue };
        if trimmed.starts_with("frame ") && trimmed.contains("flags=0x") {
            let flags_text = trimmed.split("flags=0x").nth(1).and_then(|t| t.get(..2)).unwrap_or_default();
            let flags = u8::from_str_radix(flags_text, 16).map_err(|_| format!("line {number}: bad flags"))?;
            let size = trimmed
                .split("size=")
                .nth(1)
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(format!("line {number}: bad size"))?;
            let header = if flags & 0x02 == 0 { 2 } else { 9 };
            frames.push(Frame { flags, size, block: Block::new(header + size) });
        } else if let Some(frame) = frames.last_mut() {
            frame.block.feed(line, number)?;
        }
        if frames.len() == *count && frames.iter().all(|f| f.block.is_complete()) {
            let mut payloads = Vec::new();
            for (i, frame) in frames.drain(..).enumerate() {
                let raw = frame.block.bytes;
                let more = i + 1 < *count;
                let (declared, payload) = if frame.flags & 0x02 == 0 {
                    (usize::from(raw[1]), &raw[2..])
                } else {
                    let mut len = [0; 8];
                    len.copy_from_slice(&raw[1..9]);
                    (usize::try_from(u64::from_be_bytes(len))?, &raw[9..])
                };
                if raw[0] != frame.flags || declared != frame.size || (frame.flags & 0x01 == 1) != more {
                    return Err(format!("line {number}: zmtp frame {i} header does not match").into());
                }
                payloads.push(payload.to_vec());
            }
            messages.push(payloads);
            current = None;
        }
    }
    match current {
        Some(_) => Err("the last zmtp message is incomplete".into()),
        None => Ok(messages),
    }
}

#[test]
fn hex_lines_are_recognised() {
    assert_eq!(hex_line("    0010  5f 69 64 d9 20  |_id. |", 16), Some(vec![0x5f, 0x69, 0x64, 0xd9, 0x20]));
    assert_eq!(hex_line("    0010  5f 69  |ab cd|", 0), None, "wrong offset");
    assert_eq!(hex_line("      a7 76 65  fixstr", 0), None, "annotation line");
    assert_eq!(hex_line("    0000  +f", 0), None, "not hex");
}
