//! Decoding the transmit stream AWX writes to the worker's stdin.
//!
//! The stream is JSON lines, except that the zip's base64 follows a `{"zipfile": N}` line and is
//! followed *directly* by the next JSON line (no newline in between). So it is decoded here byte
//! by byte: exactly the base64 characters that make N raw bytes, skipping whitespace, nothing more.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::{Map, Value};
use std::io::{BufRead, Write};

/// One message of the transmit stream.
#[derive(Debug)]
pub enum Message {
    /// `{"kwargs": {...}}`: the job's keyword arguments.
    Kwargs(Map<String, Value>),
    /// `{"zipfile": N}` + base64: the zip (N raw bytes) has been written to the sink.
    Zip(u64),
    /// `{"eof": true}`: the end of the job; nothing after it is read.
    Eof,
    /// Any other JSON object: ignored, as ansible-runner ignores it.
    Other,
}

/// Why reading the transmit stream failed, in words AWX can show.
#[derive(Debug)]
pub enum StreamError {
    /// A line was not a JSON object (this includes an empty or closed stdin).
    BadLine(String),
    /// The zip payload was malformed or truncated.
    BadZip(anyhow::Error),
}

/// Reads messages from a transmit stream.
pub struct Decoder<R> {
    input: R,
    /// Largest zip (raw bytes) accepted, so a bogus length cannot fill the disk.
    pub max_zip_bytes: u64,
}

impl<R: BufRead> Decoder<R> {
    /// A decoder over `input` accepting zips up to `max_zip_bytes`.
    pub fn new(input: R, max_zip_bytes: u64) -> Self {
        Decoder {
            input,
            max_zip_bytes,
        }
    }

    /// Read the next message; a zip payload is decoded into `zip_sink`.
    pub fn next_message(&mut self, zip_sink: &mut dyn Write) -> Result<Message, StreamError> {
        let mut line = Vec::new();
        // Whitespace-only lines (a newline after wrapped base64) carry nothing: skip them.
        while line.iter().all(u8::is_ascii_whitespace) {
            line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut line)
                .map_err(|e| StreamError::BadLine(format!("cannot read stdin: {e}")))?;
            if n == 0 {
                return Err(StreamError::BadLine(
                    "the transmit stream ended before its {\"eof\": true} line".into(),
                ));
            }
        }
        let value: Value = serde_json::from_slice(&line).map_err(|e| {
            let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
            StreamError::BadLine(format!("not a JSON line ({e}): {shown:?}"))
        })?;
        let Value::Object(mut obj) = value else {
            return Err(StreamError::BadLine(
                "a transmit line is not a JSON object".into(),
            ));
        };
        if let Some(kwargs) = obj.remove("kwargs") {
            return match kwargs {
                Value::Object(m) => Ok(Message::Kwargs(m)),
                Value::Null => Ok(Message::Kwargs(Map::new())),
                _ => Err(StreamError::BadLine(
                    "\"kwargs\" is not a JSON object".into(),
                )),
            };
        }
        if let Some(size) = obj.get("zipfile") {
            let size = size.as_u64().ok_or_else(|| {
                StreamError::BadZip(anyhow!("\"zipfile\" is not a byte count: {size}"))
            })?;
            if size > self.max_zip_bytes {
                return Err(StreamError::BadZip(anyhow!(
                    "the zip is {size} bytes, over the limit of {} bytes (FTL2_MAX_ZIP_BYTES)",
                    self.max_zip_bytes
                )));
            }
            self.read_base64(size, zip_sink)
                .map_err(StreamError::BadZip)?;
            return Ok(Message::Zip(size));
        }
        if obj.contains_key("eof") {
            return Ok(Message::Eof);
        }
        Ok(Message::Other)
    }

    /// Decode exactly `size` raw bytes of base64 into `sink`, consuming no byte beyond them.
    fn read_base64(&mut self, size: u64, sink: &mut dyn Write) -> Result<()> {
        let mut chars_left = size.div_ceil(3) * 4;
        let mut quad = Vec::with_capacity(64 * 1024);
        let mut written: u64 = 0;
        let engine = &base64::engine::general_purpose::STANDARD;
        while chars_left > 0 {
            let buf = self.input.fill_buf().context("reading the zip's base64")?;
            if buf.is_empty() {
                bail!("the stream ended inside the zip data: {written} of {size} bytes received");
            }
            let mut used = 0;
            for &b in buf {
                if chars_left == 0 {
                    break;
                }
                used += 1;
                if b.is_ascii_whitespace() {
                    continue;
                }
                quad.push(b);
                chars_left -= 1;
            }
            self.input.consume(used);
            // Decode whole groups of four as they arrive, so memory stays bounded.
            let whole = quad.len() / 4 * 4;
            if whole >= 48 * 1024 || (chars_left == 0 && whole > 0) {
                let bytes = engine.decode(&quad[..whole]).map_err(|e| {
                    anyhow!("invalid base64 in the zip data after {written} bytes: {e}")
                })?;
                written += bytes.len() as u64;
                sink.write_all(&bytes).context("writing the received zip")?;
                quad.drain(..whole);
            }
        }
        if written != size {
            bail!("the zip data decodes to {written} bytes, but {size} were announced");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutated_streams_end_in_eof_or_an_error_never_a_panic() {
        use crate::mutate::{cases, each_mutation};
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("project/main.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, b"async def run(*a): return 0\n").unwrap();
        let zip = zip.finish().unwrap().into_inner();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
        let stream = format!(
            "{{\"kwargs\": {{\"ident\": \"j\", \"playbook\": \"main.py\", \"envvars\": {{\"A\": 1}}}}}}\n\
             {{\"zipfile\": {}}}\n{b64}{{\"eof\": true}}\n",
            zip.len()
        );
        each_mutation("stream", &[stream.as_bytes()], cases(3000), |input| {
            decode_all(input);
        });
        // What a mutated stream could still deliver: a broken zip, unpacked.
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        each_mutation("zip", &[&zip], cases(1500), |input| {
            n += 1;
            let root = dir.path().join(n.to_string());
            let _ = crate::unpack::unpack(
                std::io::Cursor::new(input),
                &root,
                crate::unpack::Limits::default(),
            );
        });
    }

    fn decode_all(input: &[u8]) -> (Vec<String>, Vec<u8>) {
        let mut d = Decoder::new(input, 1 << 20);
        let mut zip = Vec::new();
        let mut seen = Vec::new();
        loop {
            match d.next_message(&mut zip) {
                Ok(Message::Eof) => {
                    seen.push("eof".to_string());
                    break;
                }
                Ok(m) => seen.push(format!("{m:?}").split('(').next().unwrap().to_string()),
                Err(e) => {
                    seen.push(format!("err {e:?}"));
                    break;
                }
            }
        }
        (seen, zip)
    }

    #[test]
    fn zip_base64_is_followed_directly_by_eof() {
        let raw = b"hello zip!";
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let stream =
            format!("{{\"kwargs\": {{}}}}\n{{\"zipfile\": 10}}\n{b64}{{\"eof\": true}}\nGARBAGE");
        let (seen, zip) = decode_all(stream.as_bytes());
        assert_eq!(seen, ["Kwargs", "Zip", "eof"]);
        assert_eq!(zip, raw);
    }

    #[test]
    fn whitespace_inside_base64_is_skipped() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 100]);
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let stream = format!("{{\"zipfile\": 100}}\n{wrapped}{{\"eof\": true}}\n");
        let (seen, zip) = decode_all(stream.as_bytes());
        assert_eq!(seen, ["Zip", "eof"]);
        assert_eq!(zip, [7u8; 100]);
    }

    #[test]
    fn wrong_lengths_and_truncation_are_errors() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 30]);
        // Announced too long: the eof line is read as base64.
        let (seen, _) =
            decode_all(format!("{{\"zipfile\": 60}}\n{b64}{{\"eof\": true}}\n").as_bytes());
        assert!(seen.last().unwrap().starts_with("err BadZip"), "{seen:?}");
        // Announced too short: leftover base64 makes the next line invalid JSON.
        let (seen, _) =
            decode_all(format!("{{\"zipfile\": 9}}\n{b64}{{\"eof\": true}}\n").as_bytes());
        assert!(seen.last().unwrap().starts_with("err BadLine"), "{seen:?}");
        // Truncated.
        let (seen, _) = decode_all(format!("{{\"zipfile\": 30}}\n{}", &b64[..10]).as_bytes());
        assert!(
            seen.last().unwrap().contains("ended inside the zip"),
            "{seen:?}"
        );
        // Empty stdin and no eof.
        assert!(decode_all(b"").0[0].starts_with("err BadLine"));
        assert!(decode_all(b"{\"kwargs\": {}}\n").0[1].starts_with("err BadLine"));
        assert!(decode_all(b"[1]\n").0[0].starts_with("err BadLine"));
    }

    #[test]
    fn unknown_lines_are_ignored() {
        let (seen, _) = decode_all(b"{\"hello\": 1}\n{\"kwargs\": {\"x\": 1}}\n{\"eof\": true}\n");
        assert_eq!(seen, ["Other", "Kwargs", "eof"]);
    }
}
