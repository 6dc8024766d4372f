//! How the command line prints values: as Python's `repr` (lymph's default output) or as
//! lymph's JSON.

use std::fmt::Write as _;

use lymph_core::Value;

/// `value` as Python 3's `repr` prints the object lymph decodes it to: `'HI'`, `None`,
/// `{'a': [1, 2.5]}`, `b'\x00'`, `Decimal('2.50')`. A datetime, date or time prints as the
/// constructor call of its ISO text, e.g. `datetime('2014-09-12T08:33:12+0200')`, rather than
/// Python's field-by-field form.
pub fn python_repr(value: &Value) -> String {
    let mut out = String::new();
    repr(value, &mut out);
    out
}

fn repr(value: &Value, out: &mut String) {
    match value {
        Value::Nil | Value::Undefined => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(n) => write!(out, "{n}").unwrap_or_default(),
        Value::UInt(n) => write!(out, "{n}").unwrap_or_default(),
        Value::F32(x) => float(f64::from(*x), out),
        Value::F64(x) => float(*x, out),
        Value::Str(s) => string(s, out),
        Value::Bin(bytes) => {
            out.push_str("b'");
            for &b in bytes {
                match b {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(char::from(b)),
                    _ => write!(out, "\\x{b:02x}").unwrap_or_default(),
                }
            }
            out.push('\'');
        }
        Value::Array(items) => sequence('[', ']', items, out),
        Value::Set(items) if items.is_empty() => out.push_str("set()"),
        Value::Set(items) => sequence('{', '}', items, out),
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(key, out);
                out.push_str(": ");
                repr(value, out);
            }
            out.push('}');
        }
        Value::Ext(code, data) => {
            write!(out, "ExtType(code={code}, data=").unwrap_or_default();
            repr(&Value::Bin(data.clone()), out);
            out.push(')');
        }
        Value::DateTime(text) => tagged("datetime", text, out),
        Value::Date(text) => tagged("date", text, out),
        Value::Time(text) => tagged("time", text, out),
        Value::Decimal(text) => tagged("Decimal", text, out),
        Value::Uuid(text) => tagged("UUID", text, out),
    }
}

fn tagged(name: &str, text: &str, out: &mut String) {
    out.push_str(name);
    out.push('(');
    string(text, out);
    out.push(')');
}

fn sequence(open: char, close: char, items: &[Value], out: &mut String) {
    out.push(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr(item, out);
    }
    out.push(close);
}

fn float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else {
        // Rust's shortest round-trip form, with Python's `.0` for whole numbers.
        let text = format!("{x:?}");
        out.push_str(&text);
    }
}

/// Python's `repr` of a `str`: single quotes unless the text has one and no double quote.
fn string(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(out, "\\x{:02x}", c as u32).unwrap_or_default(),
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// `value` as lymph's JSON serializer writes it (tagged types as `{"__type__", "_"}` maps), in
/// Python's `json.dumps` form.
pub fn lymph_json(value: &Value) -> String {
    lymph_core::codec::json_dumps(value).unwrap_or_else(|_| "null".to_owned())
}

#[cfg(test)]
mod tests {
    use lymph_core::Value;

    use super::python_repr;

    #[test]
    fn values_print_as_python_reprs() {
        assert_eq!(python_repr(&Value::from("HI")), "'HI'");
        assert_eq!(python_repr(&Value::from("it's")), "\"it's\"");
        assert_eq!(python_repr(&Value::from("a'\"b")), "'a\\'\"b'");
        assert_eq!(python_repr(&Value::Nil), "None");
        assert_eq!(python_repr(&Value::Bool(true)), "True");
        assert_eq!(python_repr(&Value::F64(1.0)), "1.0");
        assert_eq!(python_repr(&Value::F64(0.1)), "0.1");
        assert_eq!(python_repr(&Value::Bin(vec![0, b'a', b'\''])), "b'\\x00a\\''");
        assert_eq!(
            python_repr(&Value::map([("a", Value::Array(vec![Value::Int(1), Value::F64(2.5)]))])),
            "{'a': [1, 2.5]}"
        );
        assert_eq!(python_repr(&Value::Set(Vec::new())), "set()");
        assert_eq!(python_repr(&Value::Decimal("2.50".into())), "Decimal('2.50')");
    }
}
