//! ZooKeeper instance data: the JSON Python lymph writes, and the ids in it.

use std::io;

use lymph_core::ServiceInstance;
use lymph_core::id::{InstanceVersion, container_identity, instance_id};

use crate::{Result, wire};

/// One instance node found in a capture.
#[derive(Debug)]
struct Node {
    /// The service name (the parent znode).
    service: String,
    /// The znode name.
    name: String,
    /// The node data, exactly as stored.
    json: String,
}

/// Splits `/lymph/services/<service>/<id>` (or without the `/lymph` chroot).
fn split_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/lymph").unwrap_or(path).strip_prefix("/services/")?;
    let (service, name) = rest.split_once('/')?;
    Some((service.to_owned(), name.to_owned()))
}

/// The instance nodes of `zookeeper.txt`: from the kazoo dump (`raw:` lines under their path)
/// and from `zkCli.sh get -s <path>`.
fn zookeeper_nodes() -> Result<(Vec<Node>, Vec<Node>)> {
    let text = wire("zookeeper.txt")?;
    let (mut dump, mut zkcli) = (Vec::new(), Vec::new());
    let mut path = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(p) = trimmed.strip_prefix("### zkCli.sh get -s ") {
            path = split_path(p.trim());
        } else if trimmed.starts_with("/lymph/services/") && trimmed.contains("(EPHEMERAL") {
            path = trimmed.split_whitespace().next().and_then(split_path);
        } else if let Some(json) = trimmed.strip_prefix("raw: ") {
            let (service, name) = path.take().ok_or("raw data without a path")?;
            dump.push(Node { service, name, json: json.to_owned() });
        } else if trimmed.starts_with('{') {
            let (service, name) = path.take().ok_or("node data without a path")?;
            zkcli.push(Node { service, name, json: trimmed.to_owned() });
        }
    }
    Ok((dump, zkcli))
}

/// The node the fake server registered by hand, from `zmq_lymph_client_to_fake_server.txt`.
fn fake_server_node() -> Result<Node> {
    let text = wire("zmq_lymph_client_to_fake_server.txt")?;
    let line = text.lines().find(|l| l.starts_with("registered /lymph/services/")).ok_or("no registration")?;
    let (path, json) = line["registered ".len()..].split_once(" -> ").ok_or("bad registration line")?;
    let (service, name) = split_path(path).ok_or("bad path")?;
    Ok(Node { service, name, json: json.to_owned() })
}

/// Python's `json.dumps` layout: `", "` between items and `": "` after keys.
#[derive(Debug)]
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

fn python_json(instance: &ServiceInstance) -> Result<String> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonJson);
    serde::Serialize::serialize(instance, &mut serializer)?;
    Ok(String::from_utf8(out)?)
}

fn check_node(node: &Node) -> Result<ServiceInstance> {
    let instance: ServiceInstance = serde_json::from_str(&node.json)?;
    assert_eq!(instance.id, node.name, "the znode is named after the instance id");
    assert_eq!(instance.identity, container_identity(&instance.endpoint), "identity of {}", instance.endpoint);
    let version = match instance.version.as_deref() {
        None => InstanceVersion::None,
        Some(version) => InstanceVersion::Str(version),
    };
    assert_eq!(instance.id, instance_id(&instance.identity, &node.service, version), "id of {node:?}");
    assert_eq!(python_json(&instance)?, node.json, "ServiceInstance serializes as lymph's json.dumps");
    Ok(instance)
}

#[test]
fn instance_nodes_have_lymphs_ids() -> Result {
    let (dump, zkcli) = zookeeper_nodes()?;
    assert_eq!(dump.len(), 4, "zookeeper.txt: instance nodes in the kazoo dump");
    assert_eq!(zkcli.len(), 4, "zookeeper.txt: instance nodes read with zkCli.sh");
    let mut services = Vec::new();
    for node in &dump {
        let instance = check_node(node)?;
        services.push((node.service.clone(), instance.version.clone()));
        let same = zkcli.iter().find(|n| n.name == node.name).ok_or("node missing in the zkCli output")?;
        assert_eq!(same.json, node.json);
        assert_eq!(same.service, node.service);
    }
    services.sort();
    let lymph = Some("0.15.0".to_owned());
    assert_eq!(
        services,
        [
            ("echo".to_owned(), None),
            ("listener".to_owned(), None),
            ("lymph".to_owned(), lymph.clone()),
            ("lymph".to_owned(), lymph)
        ]
    );
    Ok(())
}

#[test]
fn hand_registered_node() -> Result {
    let node = fake_server_node()?;
    let instance = check_node(&node)?;
    assert_eq!(node.service, "fakeecho");
    assert_eq!(instance.endpoint, "tcp://127.0.0.1:41029");
    assert_eq!(instance.log_endpoint, None);
    assert!(!instance.worker);
    Ok(())
}
