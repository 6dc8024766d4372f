//! lymph's RPC message: five frames, `[id, type, subject, headers, body]`.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::Value;
use crate::codec::DecodeError;
use crate::rpc::Frames;

/// The kind of an RPC message, sent as the ASCII word in frame 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// A request; its subject is `<interface>.<method>`.
    Req,
    /// A reply carrying the method's return value.
    Rep,
    /// An acknowledgement without a value.
    Ack,
    /// A refusal: unknown interface, version or method, bad arguments, or an undeclared failure.
    Nack,
    /// A declared error: the body is `{"type", "message"}`.
    Error,
}

impl MessageKind {
    /// The word lymph puts on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Req => "REQ",
            Self::Rep => "REP",
            Self::Ack => "ACK",
            Self::Nack => "NACK",
            Self::Error => "ERROR",
        }
    }

    /// Whether this kind answers a request.
    pub fn is_reply(self) -> bool {
        self != Self::Req
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageKind {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, FrameError> {
        Ok(match s {
            "REQ" => Self::Req,
            "REP" => Self::Rep,
            "ACK" => Self::Ack,
            "NACK" => Self::Nack,
            "ERROR" => Self::Error,
            _ => return Err(FrameError::Kind(s.chars().take(16).collect())),
        })
    }
}

/// Why frames are not a lymph message. Routine: such frames are logged and dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not the five frames of a message.
    #[error("bad message frame count: expected 5 frames, got {0}")]
    FrameCount(usize),
    /// A text frame (id, type or subject) is not UTF-8.
    #[error("the {0} frame is not utf-8")]
    NotUtf8(&'static str),
    /// The type frame is not one of lymph's words.
    #[error("unknown message type {0:?}")]
    Kind(String),
    /// The headers or body frame is not valid msgpack.
    #[error("bad msgpack: {0}")]
    Msgpack(#[from] DecodeError),
    /// Valid msgpack of the wrong shape.
    #[error("bad message: {0}")]
    Shape(&'static str),
}

/// Message or event headers: a msgpack map with string keys, in the order they were written.
///
/// lymph reads `version` and `trace_id` from RPC headers and `trace_id` and `retry_count` from
/// event headers; other keys are carried along untouched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers {
    entries: Vec<(String, Value)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The headers of a request or reply: `{"version": .., "trace_id": ..}`, nil where unset,
    /// as lymph always sends both keys.
    pub fn rpc(version: Option<&str>, trace_id: Option<&str>) -> Self {
        let mut headers = Self::new();
        headers.insert("version", version.map(Value::from).unwrap_or(Value::Nil));
        headers.insert("trace_id", trace_id.map(Value::from).unwrap_or(Value::Nil));
        headers
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, in place when it exists, else at the end.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The `trace_id` header, when it is a string.
    pub fn trace_id(&self) -> Option<&str> {
        self.get("trace_id").and_then(Value::as_str)
    }

    /// The `version` header, when it is a string.
    pub fn version(&self) -> Option<&str> {
        self.get("version").and_then(Value::as_str)
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The headers as a msgpack map value.
    pub fn to_value(&self) -> Value {
        Value::Map(self.entries.iter().map(|(k, v)| (Value::from(k.as_str()), v.clone())).collect())
    }

    /// The `trace_id` header of msgpack-encoded headers, read in place without decoding the rest:
    /// what `Headers::from_value(Value::from_msgpack(encoded)?)?.trace_id()` gives for
    /// well-formed headers, without allocating. `None` when the headers are not a map, hold no
    /// string `trace_id`, or are malformed before it.
    pub fn peek_trace_id(encoded: &[u8]) -> Option<&str> {
        use crate::codec::{Item, Reader, skip};
        let mut reader = Reader::new(encoded);
        let Ok(Item::Map(len)) = reader.item() else { return None };
        for _ in 0..len {
            let key = match reader.item().ok()? {
                Item::Str(key) => key.as_bytes(),
                Item::Bin(key) => key,
                _ => return None,
            };
            if key == b"trace_id" {
                return match reader.item().ok()? {
                    Item::Str(value) => Some(value),
                    Item::Bin(value) => std::str::from_utf8(value).ok(),
                    _ => None,
                };
            }
            skip(&mut reader, 1).ok()?;
        }
        None
    }

    /// Reads headers from a map value; keys must be strings (str, or bin holding UTF-8).
    ///
    /// # Errors
    ///
    /// When `value` is not a map with string keys.
    pub fn from_value(value: Value) -> Result<Self, FrameError> {
        let Value::Map(map) = value else {
            return Err(FrameError::Shape("headers must be a map"));
        };
        let entries = map
            .into_iter()
            .map(|(k, v)| match k {
                Value::Str(k) => Ok((k, v)),
                Value::Bin(k) => String::from_utf8(k).map(|k| (k, v)).map_err(|_| FrameError::NotUtf8("header key")),
                _ => Err(FrameError::Shape("header keys must be strings")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }
}

/// One lymph RPC message.
///
/// The body is kept as the msgpack bytes it travels as; the side that knows its type decodes it
/// ([`Message::body_value`], or a typed decode in generated code).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message id, 32 lowercase hex characters.
    pub id: String,
    /// What kind of message this is.
    pub kind: MessageKind,
    /// `<interface>.<method>` for a request; the id of the request answered for a reply.
    pub subject: String,
    /// The headers.
    pub headers: Headers,
    /// The body, as msgpack.
    pub body: Bytes,
}

impl Message {
    /// The message's five frames.
    pub fn to_frames(&self) -> Frames {
        vec![
            Bytes::copy_from_slice(self.id.as_bytes()),
            Bytes::from_static(self.kind.as_str().as_bytes()),
            Bytes::copy_from_slice(self.subject.as_bytes()),
            Bytes::from(self.headers.to_value().to_msgpack()),
            self.body.clone(),
        ]
    }

    /// Parses five frames.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] when the frames are not a lymph message; never panics.
    pub fn from_frames(frames: &[Bytes]) -> Result<Self, FrameError> {
        let [id, kind, subject, headers, body] = frames else {
            return Err(FrameError::FrameCount(frames.len()));
        };
        let text =
            |frame: &Bytes, name| std::str::from_utf8(frame).map(str::to_owned).map_err(|_| FrameError::NotUtf8(name));
        let kind: MessageKind = text(kind, "type")?.parse()?;
        let headers = Headers::from_value(Value::from_msgpack(headers)?)?;
        // The body is checked here so that a malformed body is a frame error, not a handler's problem.
        crate::codec::validate(body)?;
        Ok(Self { id: text(id, "id")?, kind, subject: text(subject, "subject")?, headers, body: body.clone() })
    }

    /// Decodes the body into a dynamic value.
    ///
    /// # Errors
    ///
    /// When the body is not valid msgpack (not possible for a message from [`Message::from_frames`]).
    pub fn body_value(&self) -> Result<Value, DecodeError> {
        Value::from_msgpack(&self.body)
    }
}
