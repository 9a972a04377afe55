//! The guest's stdout and stderr, turned into `verbose` job events line by line as they come.
//!
//! Output is capped (lines and bytes, shared by both streams and by the script's custom events):
//! a runaway `print` loop must not flood AWX. Past the cap, output is counted and dropped, and
//! one warning at the end says how much.

use crate::tree::EventTree;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Limits on what the script may add to the job output.
#[derive(Debug, Clone, Copy)]
pub struct OutputCaps {
    /// Most lines (`FTL2_MAX_OUTPUT_LINES`, default 20000).
    pub max_lines: u64,
    /// Most bytes (`FTL2_MAX_OUTPUT_BYTES`, default 8 MiB).
    pub max_bytes: u64,
    /// Longest single line kept whole (`FTL2_MAX_LINE_BYTES`, default 64 KiB); longer lines are cut.
    pub max_line_bytes: usize,
}

impl Default for OutputCaps {
    fn default() -> Self {
        OutputCaps {
            max_lines: 20_000,
            max_bytes: 8 << 20,
            max_line_bytes: 64 << 10,
        }
    }
}

impl OutputCaps {
    /// Defaults overridden from the environment.
    pub fn from_env() -> OutputCaps {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut c = OutputCaps::default();
        if let Some(v) = get("FTL2_MAX_OUTPUT_LINES") {
            c.max_lines = v;
        }
        if let Some(v) = get("FTL2_MAX_OUTPUT_BYTES") {
            c.max_bytes = v;
        }
        if let Some(v) = get("FTL2_MAX_LINE_BYTES") {
            c.max_line_bytes = v.max(80) as usize;
        }
        c
    }
}

#[derive(Default)]
struct SinkState {
    partial: [Vec<u8>; 2],
    lines: u64,
    bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// Where both guest streams (and custom events) go: the job's event tree, under the caps.
pub struct OutputSink {
    tree: Arc<Mutex<EventTree>>,
    caps: OutputCaps,
    state: Mutex<SinkState>,
}

impl OutputSink {
    /// A sink writing to `tree` under `caps`.
    pub fn new(tree: Arc<Mutex<EventTree>>, caps: OutputCaps) -> Arc<OutputSink> {
        Arc::new(OutputSink {
            tree,
            caps,
            state: Mutex::new(SinkState::default()),
        })
    }

    /// One line of script output (without its newline); counted against the caps.
    pub fn line(&self, line: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let len = line.len() as u64 + 1;
        if st.lines >= self.caps.max_lines || st.bytes + len > self.caps.max_bytes {
            st.dropped_lines += 1;
            st.dropped_bytes += len;
            return;
        }
        st.lines += 1;
        st.bytes += len;
        drop(st);
        let mut text = line.trim_end_matches('\r').to_string();
        if text.len() > self.caps.max_line_bytes {
            let mut cut = self.caps.max_line_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let total = text.len();
            text.truncate(cut);
            text.push_str(&format!(" ... [line cut at {cut} of {total} bytes]"));
        }
        self.tree
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verbose(&text);
    }

    fn write(&self, stream: usize, bytes: &[u8]) {
        let mut complete = Vec::new();
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let buf = &mut st.partial[stream];
            buf.extend_from_slice(bytes);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let rest = buf.split_off(pos + 1);
                let mut line = std::mem::replace(buf, rest);
                line.pop();
                complete.push(line);
            }
            // A line with no newline growing without end is emitted in pieces.
            if buf.len() > self.caps.max_line_bytes * 2 {
                complete.push(std::mem::take(buf));
            }
        }
        for l in complete {
            self.line(&String::from_utf8_lossy(&l));
        }
    }

    /// Emit unterminated last lines and the warning about dropped output, if any.
    pub fn finish(&self) {
        let partials: Vec<Vec<u8>> = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.partial.iter_mut().map(std::mem::take).collect()
        };
        for p in partials.into_iter().filter(|p| !p.is_empty()) {
            self.line(&String::from_utf8_lossy(&p));
        }
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.dropped_lines > 0 {
            let msg = format!(
                "ftl2-runner dropped {} lines ({} bytes) of script output and events over the cap of {} lines / {} bytes (FTL2_MAX_OUTPUT_LINES / FTL2_MAX_OUTPUT_BYTES)",
                st.dropped_lines, st.dropped_bytes, self.caps.max_lines, self.caps.max_bytes
            );
            drop(st);
            self.tree
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .warning(&msg);
        }
    }
}

/// One of the guest's standard streams.
#[derive(Clone)]
pub struct GuestStream {
    sink: Arc<OutputSink>,
    index: usize,
}

impl GuestStream {
    /// The guest's stdout.
    pub fn stdout(sink: &Arc<OutputSink>) -> GuestStream {
        GuestStream {
            sink: Arc::clone(sink),
            index: 0,
        }
    }
    /// The guest's stderr.
    pub fn stderr(sink: &Arc<OutputSink>) -> GuestStream {
        GuestStream {
            sink: Arc::clone(sink),
            index: 1,
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.sink.write(self.index, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.sink.write(self.index, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
