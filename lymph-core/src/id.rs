//! lymph's identifiers: container identities and interface instance ids.
//!
//! lymph derives both with `hash_id(*bits)`: the MD5, as lowercase hex, of the UTF-8 text of the
//! Python 3 repr of the tuple `bits`. Peers treat them as opaque strings, so any unique hex would
//! interoperate; these functions reproduce lymph's values exactly, so a Rust container registers
//! under the same ids a Python one would.

use md5::{Digest, Md5};

/// The version element of an interface instance id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceVersion<'a> {
    /// An unversioned interface: `None`.
    None,
    /// A version stored as a plain string, as for the built-in `lymph` interface: `'0.15.0'`.
    Str(&'a str),
    /// A version configured as `name@X.Y.Z`, a `semantic_version.Version`: `Version('1.2.0')`.
    /// Give the canonical text of the version, as `str(Version(..))` prints it.
    Semver(&'a str),
}

/// The identity of the container listening on `endpoint`: `md5(str((endpoint,)))`.
///
/// It is the `identity` of every instance the container registers and the `source` of the events
/// it emits.
pub fn container_identity(endpoint: &str) -> String {
    md5_hex(&format!("({},)", py_repr(endpoint)))
}

/// The id of the instance of interface `name` (at `version`) hosted by the container `identity`:
/// `md5(str((identity, name, version)))`. It names the instance's node in the registry.
pub fn instance_id(identity: &str, name: &str, version: InstanceVersion<'_>) -> String {
    let version = match version {
        InstanceVersion::None => "None".to_owned(),
        InstanceVersion::Str(version) => py_repr(version),
        InstanceVersion::Semver(version) => format!("Version({})", py_repr(version)),
    };
    md5_hex(&format!("({}, {}, {})", py_repr(identity), py_repr(name), version))
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Python 3's `repr()` of a `str`.
///
/// The quote is `'` unless the text contains `'` and no `"`. Backslashes, the quote, `\t`, `\n`
/// and `\r` are escaped; other characters that are not printable become `\xhh`, `\uhhhh` or
/// `\Uhhhhhhhh`. One simplification: code points unassigned in Python's Unicode database (which
/// depends on the Python version) are taken as printable; Python escapes them.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                let escaped = match n {
                    0..=0xff => format!("\\x{n:02x}"),
                    0x100..=0xffff => format!("\\u{n:04x}"),
                    _ => format!("\\U{n:08x}"),
                };
                out.push_str(&escaped);
            }
        }
    }
    out.push(quote);
    out
}

/// Assigned code points above ASCII that Python's `str.isprintable()` rejects (categories Cc, Cf,
/// Zs other than space, Zl, Zp, Co), as of Python 3.11 (Unicode 14.0).
const NOT_PRINTABLE: &[(u32, u32)] = &[
    (0x80, 0xa0),
    (0xad, 0xad),
    (0x600, 0x605),
    (0x61c, 0x61c),
    (0x6dd, 0x6dd),
    (0x70f, 0x70f),
    (0x890, 0x891),
    (0x8e2, 0x8e2),
    (0x1680, 0x1680),
    (0x180e, 0x180e),
    (0x2000, 0x200f),
    (0x2028, 0x202f),
    (0x205f, 0x2064),
    (0x2066, 0x206f),
    (0x3000, 0x3000),
    (0xe000, 0xf8ff),
    (0xfdd0, 0xfdef),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x13438),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
    (0xf0000, 0x10ffff),
];

fn is_printable(c: char) -> bool {
    let n = u32::from(c);
    if n < 0x80 {
        return (0x20..0x7f).contains(&n);
    }
    // The noncharacters U+xxFFFE and U+xxFFFF of every plane.
    if n & 0xfffe == 0xfffe {
        return false;
    }
    !NOT_PRINTABLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_the_mock_container() {
        // The value asserted in lymph's own test_mockcontainer.py.
        assert_eq!(container_identity("mock://127.0.0.1:1"), "52d967815c003dd3cd5c492971508657");
    }

    #[test]
    fn ids_registered_by_python_lymph() {
        // Live data from the ZooKeeper capture (tests/golden/wire/zookeeper.txt).
        let echo = container_identity("tcp://127.0.0.1:64649");
        assert_eq!(echo, "6332f7e13b20cdfe61daa462925c8f25");
        assert_eq!(instance_id(&echo, "echo", InstanceVersion::None), "8aaa4bc8b4228e28dcb6f58686228be1");
        assert_eq!(instance_id(&echo, "lymph", InstanceVersion::Str("0.15.0")), "d5090cf6ebe71cffd6dfb99bee8bc498");
        let listener = container_identity("tcp://127.0.0.1:36044");
        assert_eq!(listener, "85c04eac61e75777fce13c37b599229c");
        assert_eq!(instance_id(&listener, "listener", InstanceVersion::None), "6a902fcf249c736dfc5775d4b1e6ed33");
        assert_eq!(instance_id(&listener, "lymph", InstanceVersion::Str("0.15.0")), "ff97d96beb606f406080b45c81ae4d45");
        // The fake server of zmq_lymph_client_to_fake_server.txt computed its ids the same way.
        let fake = container_identity("tcp://127.0.0.1:41029");
        assert_eq!(fake, "ffb66ce23c1f3c9d1df0ce963e8576f3");
        assert_eq!(instance_id(&fake, "fakeecho", InstanceVersion::None), "a7004490b0308c4c1d7660bdb44f2c41");
    }

    #[test]
    fn versioned_instance_ids() {
        // Computed with CPython 3.11: md5 of the repr text.
        let identity = "52d967815c003dd3cd5c492971508657";
        assert_eq!(instance_id(identity, "echo", InstanceVersion::None), "b9d322414bdc941ec65a8f00af05f553");
        assert_eq!(instance_id(identity, "echo", InstanceVersion::Semver("1.2.0")), "d56bdfa2f581d3e945003ce665fefd4c");
    }

    #[test]
    fn repr_matches_python() {
        // (text, Python's repr, md5 of the 1-tuple's repr), from CPython 3.11.
        let cases = [
            ("plain", "'plain'", "dda0278a164701d8db8d7adf71ef4727"),
            ("it's", r#""it's""#, "1f667e439d7f72028911bd1970035f59"),
            (r#"say "hi""#, r#"'say "hi"'"#, "34421f9fc399c6330ca2ce9e7ccdb134"),
            (r#"both ' and ""#, r#"'both \' and "'"#, "2636d97938572225d1fb2d1fcbf66d7a"),
            (r"back\slash", r"'back\\slash'", "93c35c2f9880be55e592e3c7d749127a"),
            ("tab\tnl\ncr\r", r"'tab\tnl\ncr\r'", "db5a20a2443f2cacce19976ed8a6fe26"),
            ("\x00\x1f\x7f", r"'\x00\x1f\x7f'", "04d33924737559caa6f95c82fb986cea"),
            ("café", "'café'", "58c92dd6f3d2a555e08643328f5131ae"),
            ("\u{85}\u{a0}\u{ad}", r"'\x85\xa0\xad'", "82ea576ff0a0251cf6a641c51717bd17"),
            ("\u{2028}\u{200b}", r"'\u2028\u200b'", "5f01edcaf1e8a40ec05ec2dfa91b3917"),
            ("\u{e000}", r"'\ue000'", "6c143c6a2d97184a7cbae4bf413b1f65"),
            ("😀", "'😀'", "ad97e7bc94041c48222aa5f72f3304e0"),
            ("\u{e0001}", r"'\U000e0001'", "908af6c4c370e46c1d10efbe62d24059"),
            ("\u{fffe}", r"'\ufffe'", "dea820b4e16c1439e744aec28a50574a"),
        ];
        for (text, repr, md5) in cases {
            assert_eq!(py_repr(text), repr, "{text:?}");
            assert_eq!(container_identity(text), md5, "{text:?}");
        }
    }
}
