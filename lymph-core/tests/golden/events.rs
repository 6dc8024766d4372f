//! RabbitMQ event bodies exactly as Python lymph publishes them.

use lymph_core::id::container_identity;
use lymph_core::{Event, Value};

use crate::capture::event_bodies;
use crate::{Result, wire};

/// The event bodies in `amqp_event.txt`: one from `lymph emit`, one emitted by the echo service.
const EVENTS: usize = 2;

fn events() -> Result<Vec<(Vec<u8>, Event)>> {
    let bodies = event_bodies(&wire("amqp_event.txt")?)?;
    assert_eq!(bodies.len(), EVENTS, "amqp_event.txt: number of event bodies");
    bodies
        .into_iter()
        .map(|body| {
            let event = Event::from_msgpack(&body)?;
            Ok((body, event))
        })
        .collect()
}

#[test]
fn event_bodies_round_trip() -> Result {
    for (body, event) in events()? {
        assert_eq!(event.to_msgpack(), body, "{event:?} re-encodes differently");
        let value = Value::from_msgpack(&body)?;
        assert_eq!(value.to_msgpack(), body);
        let keys: Vec<_> = value.as_map().ok_or("not a map")?.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [Some("type"), Some("headers"), Some("body"), Some("source")]);
    }
    Ok(())
}

#[test]
fn emitted_events() -> Result {
    let events = events()?;
    let (_, emitted) = &events[0];
    assert_eq!(emitted.event_type, "uppercase_transform_finished");
    assert_eq!(emitted.trace_id(), Some("6a5d9f3121f244e1b7d46934154d144d"));
    assert_eq!(emitted.body["text"].as_str(), Some("captured"));
    assert_eq!(emitted.source, "4b5a473bab6d8ce1483a5f251b392024");
    assert_eq!(emitted.retry_count(), None);

    let (body, from_echo) = &events[1];
    assert_eq!(from_echo.body, Value::map([("text", "wire")]));
    // The echo service's identity, from its endpoint in the ZooKeeper capture.
    assert_eq!(from_echo.source, container_identity("tcp://127.0.0.1:64649"));

    let mut built = Event::new(
        "uppercase_transform_finished",
        Value::map([("text", "wire")]),
        Some("6b80075ce3c64f5eb3a426d7a5a57b21".to_owned()),
    );
    built.source = container_identity("tcp://127.0.0.1:64649");
    assert_eq!(&built.to_msgpack(), body, "an event built in Rust has Python's bytes");
    Ok(())
}
