//! JSON text exactly as Python's `json.dumps` writes it (`", "` / `": "` separators, non-ASCII
//! escaped), so our stream and artifact files read like ansible-runner's and stay pure ASCII
//! whatever log pipeline sits between the pod and AWX.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};
use std::io::{self, Write};

/// A serde_json formatter reproducing `json.dumps(obj)` with its default arguments.
#[derive(Default)]
pub struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        frag: &str,
    ) -> io::Result<()> {
        if frag.is_ascii() {
            return w.write_all(frag.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in frag.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{:04x}", unit)?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        esc: CharEscape,
    ) -> io::Result<()> {
        // Python writes control characters as \u00XX except the five short forms.
        let s: &[u8] = match esc {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(w, "\\u{:04x}", byte),
            _ => return Err(io::Error::other("unknown JSON escape")),
        };
        w.write_all(s)
    }
}

/// Serialize `value` as Python's `json.dumps` would, into a byte vector.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = Serializer::with_formatter(&mut out, PyFormatter);
    // Serializing a serde_json::Value or a derived struct into memory cannot fail.
    value
        .serialize(&mut ser)
        .expect("serializing JSON into memory");
    out
}

/// Serialize `value` as Python's `json.dumps` would, into a String.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(to_vec(value)).expect("JSON text is ASCII")
}

/// Python's `str()` of a JSON scalar (a string as it is, `True`/`False`, a number); None for
/// null, arrays and objects, whose Python text is not their JSON.
pub fn scalar_str(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let v = json!({"a": [1, "x"], "b": {"c": null}, "é": "\u{1F600}\u{1}\r\n"});
        assert_eq!(
            super::to_string(&v),
            r#"{"a": [1, "x"], "b": {"c": null}, "\u00e9": "\ud83d\ude00\u0001\r\n"}"#
        );
    }
}
