//! ZeroMQ RPC messages: frames and msgpack bodies exactly as Python lymph sends them.

use bytes::Bytes;
use lymph_core::id::container_identity;
use lymph_core::{Headers, Message, MessageKind, Value, codec};
use serde::Serialize;

use crate::capture::{CapturedMessage, zmq_messages, zmtp_messages};
use crate::{Result, wire};

/// The messages of `zmq_client_to_lymph.txt`: five calls to the echo service and their replies,
/// then a heartbeat ping from the service and the reply to it.
const CLIENT_TO_LYMPH: usize = 12;
/// The messages of `zmq_lymph_client_to_fake_server.txt`: two requests from lymph, two replies.
const LYMPH_TO_FAKE_SERVER: usize = 4;
/// The messages on the wire in `zmtp_raw.txt`, both TCP connections.
const ZMTP: usize = 6;

fn parsed(frames: &[Bytes]) -> Result<Message> {
    Ok(Message::from_frames(frames)?)
}

/// Checks that `frames` parse as a message that gives back the same frames, and that the headers
/// and body re-encode byte for byte as dynamic values.
fn assert_round_trip(frames: &[Bytes], context: &str) -> Result<Message> {
    let message = Message::from_frames(frames).map_err(|e| format!("{context}: {e}"))?;
    assert_eq!(message.to_frames(), frames, "{context}: frames differ after a round trip");
    for (name, frame) in [("headers", &frames[3]), ("body", &frames[4])] {
        let value = Value::from_msgpack(frame).map_err(|e| format!("{context}: {name}: {e}"))?;
        assert_eq!(value.to_msgpack(), frame.as_ref(), "{context}: {name} {value} re-encodes differently");
        codec::validate(frame)?;
    }
    Ok(message)
}

fn captured(file: &str, expected: usize) -> Result<Vec<CapturedMessage>> {
    let messages = zmq_messages(&wire(file)?)?;
    assert_eq!(messages.len(), expected, "{file}: number of messages");
    for message in &messages {
        let n = message.frames.len();
        assert!(n == 5 || n == 6, "{file} line {}: {n} frames", message.line);
        if n == 6 {
            let source = message.source().ok_or("source frame is not utf-8")?;
            assert!(source.starts_with("tcp://127.0.0.1:"), "{file}: source {source}");
        }
    }
    Ok(messages)
}

/// The parsed lymph messages of a capture.
fn messages(file: &str, expected: usize) -> Result<Vec<Message>> {
    captured(file, expected)?
        .iter()
        .map(|m| assert_round_trip(&m.lymph_frames(), &format!("{file} line {}", m.line)))
        .collect()
}

#[test]
fn client_to_lymph_messages_round_trip() -> Result {
    let messages = messages("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let kinds: Vec<MessageKind> = messages.iter().map(|m| m.kind).collect();
    use MessageKind::*;
    assert_eq!(kinds, [Req, Rep, Req, Error, Req, Nack, Req, Rep, Req, Rep, Req, Rep]);
    for pair in messages.chunks(2) {
        assert_eq!(pair[1].subject, pair[0].id, "a reply's subject is the request's id");
        assert_ne!(pair[1].id, pair[0].id);
        assert_eq!(pair[1].headers.trace_id(), pair[0].headers.trace_id());
    }
    Ok(())
}

#[test]
fn lymph_to_fake_server_messages_round_trip() -> Result {
    let captured = captured("zmq_lymph_client_to_fake_server.txt", LYMPH_TO_FAKE_SERVER)?;
    assert_eq!(captured[0].source(), Some("tcp://127.0.0.1:46787"));
    let messages = messages("zmq_lymph_client_to_fake_server.txt", LYMPH_TO_FAKE_SERVER)?;
    assert_eq!(messages[0].kind, MessageKind::Req);
    assert_eq!(messages[0].subject, "fakeecho.upper");
    assert_eq!(messages[0].body_value()?, Value::map([("text", "hi from lymph")]));
    assert_eq!(messages[1].kind, MessageKind::Rep);
    assert_eq!(messages[1].body_value()?, Value::from("HI FROM LYMPH"));
    assert_eq!(messages[2].subject, "lymph.ping");
    assert_eq!(messages[2].body_value()?, Value::map([("payload", "")]));
    assert_eq!(messages[3].headers.version(), Some("0.15.0"));
    Ok(())
}

#[test]
fn zmtp_messages_round_trip() -> Result {
    let captured = zmtp_messages(&wire("zmtp_raw.txt")?)?;
    assert_eq!(captured.len(), ZMTP, "zmtp_raw.txt: number of messages");
    let messages = captured
        .iter()
        .enumerate()
        .map(|(i, frames)| {
            assert_eq!(frames.len(), 5);
            let frames: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
            assert_round_trip(&frames, &format!("zmtp_raw.txt message {i}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Client -> service: its heartbeat, its reply to the service's heartbeat, the request.
    // Service -> client: its heartbeat, its reply to the client's heartbeat, the reply "HI".
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects[0], "lymph.ping");
    assert_eq!(subjects[2], "echo.upper");
    assert_eq!(subjects[3], "lymph.ping");
    assert_eq!(subjects[1], messages[3].id);
    assert_eq!(subjects[4], messages[0].id);
    assert_eq!(subjects[5], messages[2].id);
    assert_eq!(messages[5].body_value()?, Value::from("HI"));
    assert_eq!(messages[2].headers.trace_id(), Some("2db36da985c4404facdc27a24a9ed461"));
    Ok(())
}

#[test]
fn request_and_reply() -> Result {
    let captured = captured("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let request = parsed(&captured[0].lymph_frames())?;
    assert_eq!(request.id, "8671dcab0cc64f41a8838cbe6ed8fa2d");
    assert_eq!(request.kind, MessageKind::Req);
    assert_eq!(request.subject, "echo.upper");
    assert_eq!(request.headers.version(), None);
    assert_eq!(request.headers.get("version"), Some(&Value::Nil));
    assert_eq!(request.headers.trace_id(), Some("d373dd7d8b644db395794604a1355020"));
    assert_eq!(request.body_value()?["text"].as_str(), Some("hi"));

    assert_eq!(captured[1].source(), Some("tcp://127.0.0.1:64649"));
    let reply = parsed(&captured[1].lymph_frames())?;
    assert_eq!(reply.kind, MessageKind::Rep);
    assert_eq!(reply.subject, request.id);
    assert_eq!(reply.body_value()?, Value::from("HI"));
    Ok(())
}

#[test]
fn built_messages_match_python_bytes() -> Result {
    let captured = captured("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let trace = "d373dd7d8b644db395794604a1355020";
    let request = Message {
        id: "8671dcab0cc64f41a8838cbe6ed8fa2d".to_owned(),
        kind: MessageKind::Req,
        subject: "echo.upper".to_owned(),
        headers: Headers::rpc(None, Some(trace)),
        body: Bytes::from(Value::map([("text", "hi")]).to_msgpack()),
    };
    assert_eq!(request.to_frames(), captured[0].lymph_frames());

    #[derive(Serialize)]
    struct Upper<'a> {
        text: &'a str,
    }
    assert_eq!(codec::to_msgpack(&Upper { text: "hi" })?, captured[0].frames[4]);

    let pong = Message {
        id: "c218be0d8fe24856aeb50c6bb5571fa5".to_owned(),
        kind: MessageKind::Rep,
        subject: "1f2fdfeccfd54a1d8bf1828de0e3d040".to_owned(),
        headers: Headers::rpc(Some("0.15.0"), Some(trace)),
        body: Bytes::from(codec::to_msgpack("")?),
    };
    assert_eq!(pong.to_frames(), captured[11].lymph_frames());
    Ok(())
}

#[test]
fn declared_error() -> Result {
    let captured = captured("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let request = parsed(&captured[2].lymph_frames())?;
    assert_eq!(request.subject, "echo.fail");
    let error = parsed(&captured[3].lymph_frames())?;
    assert_eq!(error.kind, MessageKind::Error);
    assert_eq!(error.subject, request.id);
    let body = error.body_value()?;
    assert_eq!(body["type"].as_str(), Some("ValueError"));
    assert_eq!(body["message"].as_str(), Some("boom"));

    #[derive(Serialize)]
    struct ErrorBody {
        r#type: &'static str,
        message: &'static str,
    }
    let typed = codec::to_msgpack(&ErrorBody { r#type: "ValueError", message: "boom" })?;
    assert_eq!(typed, error.body.as_ref());
    Ok(())
}

#[test]
fn nack_for_an_unknown_method() -> Result {
    let captured = captured("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let request = parsed(&captured[4].lymph_frames())?;
    assert_eq!(request.subject, "echo.nosuchmethod");
    assert_eq!(request.body_value()?, Value::Map(vec![]));
    let nack = parsed(&captured[5].lymph_frames())?;
    assert_eq!(nack.kind, MessageKind::Nack);
    assert_eq!(nack.headers.get("version"), None, "a NACK for an unknown method has no version header");
    assert_eq!(nack.headers.trace_id(), request.headers.trace_id());
    assert!(nack.body_value()?.is_nil());
    Ok(())
}

#[test]
fn builtin_interface_and_heartbeat() -> Result {
    let captured = captured("zmq_client_to_lymph.txt", CLIENT_TO_LYMPH)?;
    let ping = parsed(&captured[6].lymph_frames())?;
    assert_eq!(ping.subject, "lymph.ping");
    let pong = parsed(&captured[7].lymph_frames())?;
    assert_eq!(pong.headers.version(), Some("0.15.0"));
    assert_eq!(pong.body_value()?, Value::from("p"));

    let status = parsed(&captured[9].lymph_frames())?.body_value()?;
    let endpoint = status["endpoint"].as_str().ok_or("status has no endpoint")?;
    assert_eq!(endpoint, "tcp://127.0.0.1:64649");
    assert_eq!(status["identity"].as_str(), Some(container_identity(endpoint).as_str()));
    assert_eq!(container_identity(endpoint), "6332f7e13b20cdfe61daa462925c8f25");

    let heartbeat = parsed(&captured[10].lymph_frames())?;
    assert_eq!(captured[10].source(), Some(endpoint));
    assert_eq!(heartbeat.subject, "lymph.ping");
    assert_eq!(heartbeat.headers.version(), None);
    assert_eq!(heartbeat.body.as_ref(), b"\x81\xa7payload\xa0");
    let answer = parsed(&captured[11].lymph_frames())?;
    assert_eq!(answer.subject, heartbeat.id);
    assert_eq!(answer.body.as_ref(), b"\xa0");
    Ok(())
}
