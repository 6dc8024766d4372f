//! msgpack exactly as lymph 0.15 writes and reads it.
//!
//! # lymph's msgpack conventions
//!
//! Python lymph packs every header, body and event with
//! `msgpack.dumps(obj, use_bin_type=True, default=dump_object)` and unpacks with UTF-8 decoding of
//! strings. This module and [`Value`](crate::Value) follow the same rules, so the bytes match those
//! of a Python peer exactly:
//!
//! - **str vs bin.** Text is the msgpack *str* family (fixstr, then `str8` for 32 to 255 bytes, so a
//!   32-character trace id is `d9 20 …`), and bytes are the *bin* family. With
//!   [`to_msgpack`], a Rust `String`/`&str` is str and a `serde_bytes` buffer is bin; a plain
//!   `Vec<u8>` is an array of integers, as serde sees it. Strings must be UTF-8 when decoding.
//!   (Python 2 peers pack their native strings as bin; readers that want to be lenient can use
//!   [`Value::as_str`](crate::Value::as_str), which also accepts bin holding UTF-8.)
//! - **Minimal encodings.** Integers, strings, binaries, arrays, maps and ext values use the
//!   smallest form that fits, as Python's packer does. Non-negative integers are always packed as
//!   unsigned forms and negative ones as signed forms.
//! - **Structs are maps.** [`to_msgpack`] writes structs as maps keyed by field name (lymph passes
//!   keyword arguments as a map), never as arrays.
//! - **Tagged maps.** Types msgpack has no form for are packed as the two-entry map
//!   `{"__type__": <name>, "_": <value>}`, with the names `datetime`, `date`, `time`, `Decimal`,
//!   `UUID`, `set` and `UndefinedType`. [`Value`](crate::Value) decodes them into its tagged
//!   variants; [`types`](crate::types) has typed counterparts for handler signatures.
//! - **Ext 101** ([`EMBEDDED_MSGPACK_EXT`]) holds an embedded, already packed msgpack value
//!   (lymph's `raw_embed`); other ext codes are carried as they are.
//!
//! # The legacy form
//!
//! One stream is different: the metrics lymph pushes on its monitoring socket are packed with a
//! plain `msgpack.dumps(stats)`, without `use_bin_type`, by the msgpack-python 0.4 lymph 0.15
//! deploys. That packer knows only the old *raw* type for text and bytes alike: fixraw up to 31
//! bytes, then raw16 (`0xda`) and raw32 (`0xdb`), never `str8` (`0xd9`) nor bin. The raw markers
//! are those of the str family, so any decoder reads the result as strings.
//! [`to_legacy_msgpack`] writes a [`Value`](crate::Value) that way.
//!
//! Decoding is strict where lymph's would fail and never panics: a value must be complete, with no
//! trailing bytes, nest at most [`MAX_DEPTH`] containers deep, and not use the reserved byte `0xc1`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::value::Payload;

/// The ext type code lymph uses for embedded, already packed msgpack (`EMBEDDED_MSGPACK_TYPE`).
pub const EMBEDDED_MSGPACK_EXT: i8 = 101;

/// How many containers (arrays, maps) deep a decoded value may nest.
pub const MAX_DEPTH: usize = 256;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The data ends in the middle of a value.
    #[error("unexpected end of msgpack data")]
    UnexpectedEof,
    /// A msgpack string is not UTF-8.
    #[error("msgpack string is not valid utf-8")]
    InvalidUtf8,
    /// The reserved byte `0xc1` was found where a value starts.
    #[error("reserved msgpack byte 0xc1")]
    ReservedByte,
    /// Containers nest deeper than [`MAX_DEPTH`].
    #[error("msgpack value nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes are left over after the value.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
    /// The value is well-formed msgpack but does not have the shape of the requested type.
    #[error("cannot decode: {0}")]
    Serde(String),
}

impl serde::de::Error for DecodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Serde(msg.to_string())
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value cannot be represented in msgpack, e.g. a map with a key serde cannot write.
    #[error("cannot encode: {0}")]
    Serde(String),
}

impl serde::ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Serde(msg.to_string())
    }
}

/// Encodes `value` as Python lymph would: structs as maps with field names, strings as str,
/// `serde_bytes` buffers as bin, integers in their smallest form.
///
/// # Errors
///
/// When serde reports an error, e.g. a `Serialize` impl that fails.
pub fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(value).map_err(|e| EncodeError::Serde(e.to_string()))
}

/// Encodes `value` as Python's `msgpack.dumps(value)` does without `use_bin_type` (msgpack-python
/// 0.4, as lymph 0.15 deploys it): the form of lymph's metrics stream.
///
/// The bytes are those of [`Value::to_msgpack`](crate::Value::to_msgpack) except for strings and bytes, which are both
/// written as the old raw type: fixraw up to 31 bytes, raw16 (`0xda`) from 32, raw32 (`0xdb`)
/// from 65536; never `str8` (`0xd9`) nor bin (`0xc4` to `0xc6`). Integers take their smallest form,
/// floats keep their width (Python's are all float64), maps keep their order. lymph's tagged types
/// (which a plain `msgpack.dumps` cannot pack at all) are written as their tagged maps, and ext
/// values as they are.
///
/// Raw data that is not UTF-8 (from a [`Value::Bin`](crate::Value::Bin)) cannot be decoded again
/// by [`Value::from_msgpack`](crate::Value::from_msgpack), which reads raw as text.
///
/// # Panics
///
/// As [`Value::to_msgpack`](crate::Value::to_msgpack): when a string, binary or container is longer than `u32::MAX`.
pub fn to_legacy_msgpack(value: &crate::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_legacy(&mut out, value);
    out
}

fn write_legacy(out: &mut Vec<u8>, value: &crate::Value) {
    use crate::Value;

    if let Some((tag, payload)) = value.tagged() {
        write::map_len(out, 2);
        write::raw(out, b"__type__");
        write::raw(out, tag.name().as_bytes());
        write::raw(out, b"_");
        match payload {
            Payload::Str(s) => write::raw(out, s.as_bytes()),
            Payload::Items(items) => write_legacy_array(out, items),
        }
        return;
    }
    match value {
        Value::Str(s) => write::raw(out, s.as_bytes()),
        Value::Bin(b) => write::raw(out, b),
        Value::Array(items) => write_legacy_array(out, items),
        Value::Map(entries) => {
            write::map_len(out, entries.len());
            for (k, v) in entries {
                write_legacy(out, k);
                write_legacy(out, v);
            }
        }
        // Nil, booleans, numbers and ext values have one form only.
        other => other.write_msgpack(out),
    }
}

fn write_legacy_array(out: &mut Vec<u8>, items: &[crate::Value]) {
    write::array_len(out, items.len());
    for item in items {
        write_legacy(out, item);
    }
}

/// Decodes exactly one msgpack value from `bytes` into `T`.
///
/// The bytes are first checked with [`validate`], so trailing bytes, non-UTF-8 strings and
/// excessive nesting are errors whatever `T` is. Strings may be read from bin (as Python 2 peers
/// send them) when the bytes are UTF-8.
///
/// # Errors
///
/// When the bytes are not one well-formed value, or the value does not have the shape of `T`.
pub fn from_msgpack<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    validate(bytes)?;
    rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Serde(e.to_string()))
}

/// Checks that `bytes` hold exactly one well-formed msgpack value with UTF-8 strings, without
/// building it.
///
/// # Errors
///
/// The first problem found.
pub fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let mut reader = Reader::new(bytes);
    skip(&mut reader, 0)?;
    reader.finish()
}

pub(crate) fn skip(reader: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    match reader.item()? {
        Item::Array(len) => {
            check_depth(depth)?;
            for _ in 0..len {
                skip(reader, depth + 1)?;
            }
        }
        Item::Map(len) => {
            check_depth(depth)?;
            for _ in 0..len {
                skip(reader, depth + 1)?;
                skip(reader, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Fails when a container at `depth` (0 for the outermost value) would be too deep.
pub(crate) fn check_depth(depth: usize) -> Result<(), DecodeError> {
    if depth >= MAX_DEPTH { Err(DecodeError::TooDeep) } else { Ok(()) }
}

/// One msgpack item header, with the payload of scalar items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Item<'a> {
    Nil,
    Bool(bool),
    /// Any integer that fits `i64`.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    /// An array header with its element count.
    Array(usize),
    /// A map header with its entry count.
    Map(usize),
    Ext(i8, &'a [u8]),
}

/// Reads msgpack items from a byte slice; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes are left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails when bytes are left over.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEof);
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn len8(&mut self) -> Result<usize, DecodeError> {
        self.u8().map(usize::from)
    }

    fn len16(&mut self) -> Result<usize, DecodeError> {
        self.u16().map(usize::from)
    }

    fn len32(&mut self) -> Result<usize, DecodeError> {
        // usize is at least 32 bits on every platform this crate supports.
        self.u32().map(|n| n as usize)
    }

    fn str(&mut self, len: usize) -> Result<Item<'a>, DecodeError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(Item::Str).map_err(|_| DecodeError::InvalidUtf8)
    }

    fn ext(&mut self, len: usize) -> Result<Item<'a>, DecodeError> {
        let code = i8::from_be_bytes(self.array()?);
        Ok(Item::Ext(code, self.take(len)?))
    }

    /// Reads the next item header (and the payload of a scalar item).
    pub(crate) fn item(&mut self) -> Result<Item<'a>, DecodeError> {
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => Item::Int(i64::from(marker)),
            0x80..=0x8f => Item::Map(usize::from(marker & 0x0f)),
            0x90..=0x9f => Item::Array(usize::from(marker & 0x0f)),
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => Item::Nil,
            0xc1 => return Err(DecodeError::ReservedByte),
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4 => {
                let len = self.len8()?;
                Item::Bin(self.take(len)?)
            }
            0xc5 => {
                let len = self.len16()?;
                Item::Bin(self.take(len)?)
            }
            0xc6 => {
                let len = self.len32()?;
                Item::Bin(self.take(len)?)
            }
            0xc7 => {
                let len = self.len8()?;
                self.ext(len)?
            }
            0xc8 => {
                let len = self.len16()?;
                self.ext(len)?
            }
            0xc9 => {
                let len = self.len32()?;
                self.ext(len)?
            }
            0xca => Item::F32(f32::from_bits(self.u32()?)),
            0xcb => Item::F64(f64::from_bits(self.u64()?)),
            0xcc => Item::Int(i64::from(self.u8()?)),
            0xcd => Item::Int(i64::from(self.u16()?)),
            0xce => Item::Int(i64::from(self.u32()?)),
            0xcf => {
                let n = self.u64()?;
                i64::try_from(n).map_or(Item::UInt(n), Item::Int)
            }
            0xd0 => Item::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Item::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Item::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Item::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let len = self.len8()?;
                self.str(len)?
            }
            0xda => {
                let len = self.len16()?;
                self.str(len)?
            }
            0xdb => {
                let len = self.len32()?;
                self.str(len)?
            }
            0xdc => Item::Array(self.len16()?),
            0xdd => Item::Array(self.len32()?),
            0xde => Item::Map(self.len16()?),
            0xdf => Item::Map(self.len32()?),
            0xe0..=0xff => Item::Int(i64::from(i8::from_be_bytes([marker]))),
        })
    }
}

/// Writers for msgpack headers in their smallest form, as Python's packer chooses them.
pub(crate) mod write {
    /// Converts a length to the 32 bits msgpack allows.
    ///
    /// # Panics
    ///
    /// When `len` exceeds `u32::MAX`: msgpack cannot represent such a string, binary or container.
    fn len32(len: usize) -> u32 {
        u32::try_from(len).expect("msgpack cannot represent lengths above u32::MAX")
    }

    pub(crate) fn uint(out: &mut Vec<u8>, n: u64) {
        if n < 0x80 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    pub(crate) fn int(out: &mut Vec<u8>, n: i64) {
        if n >= 0 {
            uint(out, n as u64);
        } else if n >= -32 {
            out.push(n as i8 as u8);
        } else if n >= i64::from(i8::MIN) {
            out.push(0xd0);
            out.extend_from_slice(&(n as i8).to_be_bytes());
        } else if n >= i64::from(i16::MIN) {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        } else if n >= i64::from(i32::MIN) {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// Writes a header whose length goes in the marker (`fix`: base and limit), or after the
    /// 8-bit (if the kind has one), 16-bit or 32-bit marker.
    fn header(out: &mut Vec<u8>, len: usize, fix: Option<(u8, u32)>, m8: Option<u8>, m16: u8, m32: u8) {
        let len = len32(len);
        match (fix, m8) {
            (Some((base, limit)), _) if len < limit => out.push(base | len as u8),
            (_, Some(m8)) if len <= 0xff => out.extend_from_slice(&[m8, len as u8]),
            _ if len <= 0xffff => {
                out.push(m16);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(m32);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
    }

    pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
        header(out, s.len(), Some((0xa0, 32)), Some(0xd9), 0xda, 0xdb);
        out.extend_from_slice(s.as_bytes());
    }

    /// Text or bytes as the old raw type, which has no 8-bit length form: fixraw, raw16, raw32.
    pub(crate) fn raw(out: &mut Vec<u8>, b: &[u8]) {
        header(out, b.len(), Some((0xa0, 32)), None, 0xda, 0xdb);
        out.extend_from_slice(b);
    }

    pub(crate) fn bin(out: &mut Vec<u8>, b: &[u8]) {
        header(out, b.len(), None, Some(0xc4), 0xc5, 0xc6);
        out.extend_from_slice(b);
    }

    pub(crate) fn array_len(out: &mut Vec<u8>, len: usize) {
        header(out, len, Some((0x90, 16)), None, 0xdc, 0xdd);
    }

    pub(crate) fn map_len(out: &mut Vec<u8>, len: usize) {
        header(out, len, Some((0x80, 16)), None, 0xde, 0xdf);
    }

    pub(crate) fn ext(out: &mut Vec<u8>, code: i8, data: &[u8]) {
        let fixed = match data.len() {
            1 => Some(0xd4),
            2 => Some(0xd5),
            4 => Some(0xd6),
            8 => Some(0xd7),
            16 => Some(0xd8),
            _ => None,
        };
        match fixed {
            Some(marker) => out.push(marker),
            None => header(out, data.len(), None, Some(0xc7), 0xc8, 0xc9),
        }
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(data);
    }
}

/// `value` as JSON, byte for byte as Python's `json.dumps` writes it with its default settings:
/// `", "` and `": "` separators, every character outside printable ASCII escaped as `\uXXXX`.
/// lymph writes its ZooKeeper nodes and its command line's `--json` output this way.
///
/// # Errors
///
/// When `value` cannot be written as JSON.
pub fn json_dumps<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    Ok(pythonize_json(&serde_json::to_string(value)?))
}

/// Turns serde_json's compact output into Python's default `json.dumps` formatting.
fn pythonize_json(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() + compact.len() / 8);
    let mut in_string = false;
    let mut escaped = false;
    for c in compact.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
            } else if c == '\\' {
                escaped = true;
                out.push(c);
            } else if c == '"' {
                in_string = false;
                out.push(c);
            } else if (' '..='~').contains(&c) {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        } else {
            out.push(c);
            match c {
                '"' => in_string = true,
                ',' | ':' => out.push(' '),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_ensure_ascii() {
        // json.dumps({"a": "h\u00f4st \U0001f600 \x7f \" \\ \n, :"}) in Python:
        let value = serde_json::json!({"a": "h\u{f4}st \u{1f600} \u{7f} \" \\ \n, :"});
        assert_eq!(super::json_dumps(&value).unwrap(), r#"{"a": "h\u00f4st \ud83d\ude00 \u007f \" \\ \n, :"}"#);
        assert_eq!(super::pythonize_json(r#"[1,{"b":[true,null]}]"#), r#"[1, {"b": [true, null]}]"#);
    }

    use super::*;
    use crate::Value;

    #[test]
    fn validate_accepts_one_complete_value() {
        assert_eq!(validate(&[0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x90]), Ok(()));
        assert_eq!(validate(&[0xda, 0x00, 0x01, b'x']), Ok(()), "raw16/str16 is accepted");
    }

    #[test]
    fn validate_rejects_malformed_input() {
        assert_eq!(validate(&[]), Err(DecodeError::UnexpectedEof));
        assert_eq!(validate(&[0xc1]), Err(DecodeError::ReservedByte));
        assert_eq!(validate(&[0xc0, 0xc0]), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(validate(&[0xa2, 0xff, 0xfe]), Err(DecodeError::InvalidUtf8));
        assert_eq!(validate(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::UnexpectedEof));
        assert_eq!(validate(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00]), Err(DecodeError::UnexpectedEof));
        assert_eq!(validate(&[0xd8, 0x65]), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn depth_limit() {
        let ok = [vec![0x91; MAX_DEPTH], vec![0xc0]].concat();
        assert_eq!(validate(&ok), Ok(()));
        let deep = [vec![0x91; MAX_DEPTH + 1], vec![0xc0]].concat();
        assert_eq!(validate(&deep), Err(DecodeError::TooDeep));
    }

    #[test]
    fn integers_take_their_smallest_form() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (255, &[0xcc, 0xff]),
            (256, &[0xcd, 0x01, 0x00]),
            (65536, &[0xce, 0x00, 0x01, 0x00, 0x00]),
            (1 << 32, &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-128, &[0xd0, 0x80]),
            (-129, &[0xd1, 0xff, 0x7f]),
            (-32769, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for &(n, bytes) in cases {
            let mut out = Vec::new();
            write::int(&mut out, n);
            assert_eq!(out, bytes, "{n}");
            assert_eq!(Reader::new(bytes).item(), Ok(Item::Int(n)));
        }
    }

    #[test]
    fn headers_take_their_smallest_form() {
        let mut out = Vec::new();
        write::str(&mut out, &"x".repeat(31));
        assert_eq!(out[0], 0xbf);
        out.clear();
        write::str(&mut out, &"x".repeat(32));
        assert_eq!(out[..2], [0xd9, 32]);
        out.clear();
        write::str(&mut out, &"x".repeat(256));
        assert_eq!(out[..3], [0xda, 1, 0]);
        out.clear();
        write::bin(&mut out, &[]);
        assert_eq!(out, [0xc4, 0]);
        out.clear();
        write::array_len(&mut out, 16);
        assert_eq!(out, [0xdc, 0, 16]);
        out.clear();
        write::map_len(&mut out, 70000);
        assert_eq!(out, [0xdf, 0, 1, 0x11, 0x70]);
        out.clear();
        write::ext(&mut out, 101, &[0xc0]);
        assert_eq!(out, [0xd4, 101, 0xc0]);
        out.clear();
        write::ext(&mut out, -1, &[1, 2, 3]);
        assert_eq!(out, [0xc7, 3, 0xff, 1, 2, 3]);
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    #[test]
    fn legacy_strings_are_raw_without_an_8_bit_form() {
        let legacy = |value: Value| to_legacy_msgpack(&value);
        assert_eq!(legacy(Value::from("")), [0xa0]);
        let short = legacy(Value::from("x".repeat(31)));
        assert_eq!((short[0], short.len()), (0xbf, 32), "fixraw up to 31 bytes");
        let long = legacy(Value::from("x".repeat(32)));
        assert_eq!((&long[..3], long.len()), (&[0xda, 0x00, 0x20][..], 35), "raw16 from 32 bytes, not str8");
        let longer = legacy(Value::from("x".repeat(255)));
        assert_eq!(longer[..3], [0xda, 0x00, 0xff]);
        let huge = legacy(Value::from("x".repeat(65536)));
        assert_eq!(huge[..5], [0xdb, 0x00, 0x01, 0x00, 0x00], "raw32 from 65536 bytes");
        assert_eq!(legacy(Value::Bin(vec![1, 2])), [0xa2, 1, 2], "bytes are raw too, not bin");
        assert_eq!(legacy(Value::Bin(vec![7; 40]))[..3], [0xda, 0x00, 40]);
        // Modern encoding, for contrast: str8.
        assert_eq!(Value::from("x".repeat(32)).to_msgpack()[..2], [0xd9, 0x20]);
    }

    #[test]
    fn legacy_numbers_and_scalars_are_as_python_packs_them() {
        let legacy = |value: Value| to_legacy_msgpack(&value);
        assert_eq!(legacy(Value::F64(1.5)), hex("cb 3ff8000000000000"), "Python floats are float64");
        assert_eq!(legacy(Value::F32(1.5)), hex("ca 3fc00000"), "a float32 keeps its width");
        assert_eq!(legacy(Value::Int(5)), [0x05]);
        assert_eq!(legacy(Value::Int(300)), [0xcd, 0x01, 0x2c]);
        assert_eq!(legacy(Value::Int(-200)), [0xd1, 0xff, 0x38]);
        assert_eq!(legacy(Value::UInt(u64::MAX)), hex("cf ffffffffffffffff"));
        assert_eq!(legacy(Value::Nil), [0xc0]);
        assert_eq!(legacy(Value::Bool(true)), [0xc3]);
        assert_eq!(legacy(Value::Ext(101, vec![0xc0])), [0xd4, 101, 0xc0]);
    }

    #[test]
    fn legacy_containers_nest_and_keep_their_order() {
        // Python: msgpack.dumps({'time': 1.5, 'series': [['rpc', 3, {'subject': 'echo.upper',
        //   'identity': '0123456789abcdef0123456789abcdef'}], ['rpc.duration_ms', 0.25, {}],
        //   ['neg', -200, {}]]}), with msgpack 0.4 (or use_bin_type=False).
        let stats = Value::map([
            ("time", Value::F64(1.5)),
            (
                "series",
                Value::Array(vec![
                    Value::Array(vec![
                        Value::from("rpc"),
                        Value::Int(3),
                        Value::map([("subject", "echo.upper"), ("identity", "0123456789abcdef0123456789abcdef")]),
                    ]),
                    Value::Array(vec![Value::from("rpc.duration_ms"), Value::F64(0.25), Value::Map(Vec::new())]),
                    Value::Array(vec![Value::from("neg"), Value::Int(-200), Value::Map(Vec::new())]),
                ]),
            ),
        ]);
        let python = hex("82 a474696d65 cb3ff8000000000000 a6736572696573 93
             93 a3727063 03 82 a77375626a656374 aa6563686f2e7570706572 a86964656e74697479
                da0020 3031323334353637383961626364656630313233343536373839616263646566
             93 af7270632e6475726174696f6e5f6d73 cb3fd0000000000000 80
             93 a36e6567 d1ff38 80");
        assert_eq!(to_legacy_msgpack(&stats), python);
        assert_eq!(Value::from_msgpack(&python), Ok(stats), "raw16 reads back as text");

        let wide = Value::Array((0..16).map(Value::Int).collect());
        assert_eq!(to_legacy_msgpack(&wide)[..3], [0xdc, 0x00, 0x10]);
        let wide = Value::Map((0..16).map(|i| (Value::Int(i), Value::Nil)).collect());
        assert_eq!(to_legacy_msgpack(&wide)[..3], [0xde, 0x00, 0x10]);
    }

    #[test]
    fn legacy_tagged_values_are_their_maps_with_raw_strings() {
        let uuid = Value::Uuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_owned());
        let mut expected = hex("82 a85f5f747970655f5f a455554944 a15f da0024");
        expected.extend_from_slice(b"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(to_legacy_msgpack(&uuid), expected);
        let set = Value::Set(vec![Value::from("a")]);
        assert_eq!(to_legacy_msgpack(&set), hex("82 a85f5f747970655f5f a3736574 a15f 91 a161"));
    }

    #[test]
    fn typed_decode_rejects_trailing_bytes() {
        assert_eq!(from_msgpack::<i64>(&[0x01]), Ok(1));
        assert_eq!(from_msgpack::<i64>(&[0x01, 0x02]), Err(DecodeError::TrailingBytes(1)));
    }
}
