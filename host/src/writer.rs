//! The one writer of the worker stream.
//!
//! Every byte on stdout in worker mode goes through [`StreamWriter`]: it owns the event counter,
//! the line numbers and the keepalive timer, so no two lines interleave, counters have no gaps,
//! a keepalive never lands inside another line and nothing follows `{"eof": true}`.

use crate::events::{self, Event, EventContext};
use crate::pyjson;
use base64::Engine;
use serde_json::{Map, Value, json};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Set while a worker stream is open on stdout and its eof has not been written yet.
static STDOUT_STREAM_OPEN: AtomicBool = AtomicBool::new(false);

/// After a crash: end an open worker stream with an `error` status and eof, so AWX is not left
/// waiting; does nothing outside worker mode or after eof.
pub fn emergency_eof(explanation: &str) {
    if STDOUT_STREAM_OPEN.swap(false, Ordering::SeqCst) {
        let status = json!({"status": "error", "job_explanation": explanation});
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\n");
        let _ = out.write_all(&pyjson::to_vec(&status));
        let _ = out.write_all(b"\n{\"eof\": true}\n");
        let _ = out.flush();
    }
}
use std::time::{Duration, Instant};

/// Where event text is recorded besides stdout: the job's `artifacts/<ident>/stdout`.
///
/// Like ansible-runner's worker, we write no `job_events/*.json` on the worker side: the peer
/// rebuilds them from the event lines, and a file per event would cost more than the event.
pub struct EventRecorder {
    /// `artifacts/<ident>/stdout`, the text of all events; `None` when output files are suppressed.
    pub stdout_file: Option<std::io::BufWriter<File>>,
}

struct State {
    out: Box<dyn Write + Send>,
    counter: u64,
    line: u64,
    last_write: Instant,
    last_event: Instant,
    closed: bool,
    broken: bool,
    /// Also ask the kernel whether stdout's reader is gone (worker mode), so a silent job notices.
    watch_stdout: bool,
    ctx: Option<EventContext>,
    recorder: Option<EventRecorder>,
    /// Print only the events' text, as ansible-playbook shows it (local runs), not the protocol.
    terminal: bool,
}

/// Serializes every line of the worker stream onto one output, in order.
pub struct StreamWriter {
    state: Mutex<State>,
}

impl StreamWriter {
    /// The worker stream on the process's stdout.
    pub fn stdout() -> Arc<StreamWriter> {
        STDOUT_STREAM_OPEN.store(true, Ordering::SeqCst);
        let w = Self::new(Box::new(io::stdout()));
        w.lock().watch_stdout = true;
        w
    }

    /// A writer over `out` (a buffer in tests).
    pub fn new(out: Box<dyn Write + Send>) -> Arc<StreamWriter> {
        Arc::new(StreamWriter {
            state: Mutex::new(State {
                out,
                counter: 0,
                line: 0,
                last_write: Instant::now(),
                last_event: Instant::now(),
                closed: false,
                broken: false,
                watch_stdout: false,
                ctx: None,
                recorder: None,
                terminal: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock must not silence the stream's eof.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A writer printing what ansible-playbook would print on a terminal (for `ftl2-runner play`).
    pub fn terminal() -> Arc<StreamWriter> {
        let w = Self::new(Box::new(io::stdout()));
        w.lock().terminal = true;
        w
    }

    /// Emit `{"event": "keepalive", ...}` whenever `interval` passes without output, until eof.
    pub fn start_keepalive(self: &Arc<Self>, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("keepalive".into())
            .spawn(move || {
                loop {
                    let due = me.lock().last_write + interval;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let mut st = me.lock();
                    if st.closed {
                        return;
                    }
                    if st.last_write.elapsed() >= interval {
                        let line = json!({"event": "keepalive", "counter": 0, "uuid": 0});
                        write_line(&mut st, &pyjson::to_vec(&line));
                    }
                }
            })
            .ok();
    }

    /// Whether the stream's reader has gone away (a write failed, or stdout's read end was
    /// closed): nothing the job does can be reported any more, so the job should stop.
    pub fn reader_gone(&self) -> bool {
        let st = self.lock();
        st.broken || (st.watch_stdout && stdout_reader_closed())
    }

    /// Resolve once [`Self::reader_gone`] turns true (checked four times a second).
    pub async fn wait_reader_gone(&self) {
        while !self.reader_gone() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Attach the job's identity and artifact directory once the job settings are known.
    pub fn begin_job(&self, ctx: EventContext, recorder: Option<EventRecorder>) {
        let mut st = self.lock();
        st.ctx = Some(ctx);
        st.recorder = recorder;
    }

    /// Write a status line (`starting`, `running`, final status, or `error`).
    pub fn status(&self, status: Map<String, Value>) {
        let mut st = self.lock();
        if st.closed || st.terminal {
            return;
        }
        write_line(&mut st, &pyjson::to_vec(&status));
    }

    /// Number and write one job event, and record it in the artifacts.
    pub fn event(&self, ev: &Event) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if st.terminal {
            if ev.event != "playbook_on_start"
                && !(ev.stdout.is_empty() && ev.trailing_newlines == 0)
            {
                let mut text = ev.stdout.replace("\r\n", "\n");
                for _ in 0..ev.trailing_newlines.max(1) {
                    text.push('\n');
                }
                write_raw(&mut st, text.as_bytes());
            }
            st.last_event = Instant::now();
            return;
        }
        let Some(ctx) = st.ctx.clone() else { return };
        st.counter += 1;
        let start = st.line;
        let end = start + ev.line_count();
        st.line = end;
        st.last_event = Instant::now();
        let rendered = events::render(&ctx, ev, st.counter, start, end);
        let line = pyjson::to_vec(&rendered);
        write_line(&mut st, &line);
        if let Some(rec) = st.recorder.as_mut() {
            // A full disk must not stop the job, so failures here are ignored.
            if let (Some(f), false) = (rec.stdout_file.as_mut(), ev.stdout.is_empty()) {
                let _ = f.write_all(ev.stdout.as_bytes());
                let _ = f.write_all(b"\n");
            }
        }
    }

    /// Flush and close the artifact files, before they are zipped.
    pub fn end_recording(&self) {
        if let Some(mut rec) = self.lock().recorder.take()
            && let Some(f) = rec.stdout_file.as_mut()
        {
            let _ = f.flush();
        }
    }

    /// Time since the last job event (keepalives and status lines do not count): the job's
    /// idle time for `idle_timeout`.
    pub fn idle_for(&self) -> std::time::Duration {
        self.lock().last_event.elapsed()
    }

    /// Stream a zip file as `{"zipfile": N}\n` + base64, with no newline after the base64.
    pub fn zipfile(&self, zip: &Path) -> io::Result<()> {
        let mut data = Vec::new();
        File::open(zip)?.read_to_end(&mut data)?;
        let mut st = self.lock();
        if st.closed || st.terminal {
            return Ok(());
        }
        let head = pyjson::to_vec(&json!({"zipfile": data.len()}));
        write_line(&mut st, &head);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        write_raw(&mut st, encoded.as_bytes());
        Ok(())
    }

    /// Forward one complete line of another worker's stream (a job handed to the original
    /// ansible-runner) as it is; returns true once that line ended the stream with its eof.
    pub fn passthrough_line(&self, line: &[u8]) -> bool {
        let mut st = self.lock();
        if st.closed {
            return true;
        }
        write_raw(&mut st, line);
        if line.ends_with(b"{\"eof\": true}\n") {
            st.closed = true;
            STDOUT_STREAM_OPEN.store(false, Ordering::SeqCst);
        }
        st.closed
    }

    /// Close the stream with `{"eof": true}\n`; nothing is written after it.
    pub fn eof(&self) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if st.terminal {
            st.closed = true;
            return;
        }
        write_line(&mut st, b"{\"eof\": true}");
        st.closed = true;
        STDOUT_STREAM_OPEN.store(false, Ordering::SeqCst);
        st.recorder = None;
    }
}

/// A pipe whose read end is closed reports POLLERR to its writer, a fully shut socket POLLHUP;
/// a regular file or a live pipe reports neither.
fn stdout_reader_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd and a zero timeout; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

fn write_raw(st: &mut State, bytes: &[u8]) {
    if st.broken {
        return;
    }
    if st
        .out
        .write_all(bytes)
        .and_then(|_| st.out.flush())
        .is_err()
    {
        st.broken = true;
    }
    st.last_write = Instant::now();
}

fn write_line(st: &mut State, line: &[u8]) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line);
    buf.push(b'\n');
    write_raw(st, &buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn counters_and_lines_are_contiguous_and_nothing_follows_eof() {
        let buf = Buf::default();
        let w = StreamWriter::new(Box::new(buf.clone()));
        w.begin_job(
            EventContext {
                runner_ident: "7".into(),
                job_id: None,
                pid: 1,
            },
            None,
        );
        w.event(&Event::verbose("one"));
        w.event(&Event::verbose("two\r\nthree"));
        w.eof();
        w.event(&Event::verbose("late"));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            (lines[0]["counter"].as_u64(), lines[0]["end_line"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(
            (
                lines[1]["start_line"].as_u64(),
                lines[1]["end_line"].as_u64()
            ),
            (Some(1), Some(3))
        );
        assert_eq!(lines[2], json!({"eof": true}));
    }

    #[test]
    fn keepalive_fires_only_when_idle() {
        let buf = Buf::default();
        let w = StreamWriter::new(Box::new(buf.clone()));
        w.start_keepalive(Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(350));
        w.eof();
        std::thread::sleep(Duration::from_millis(150));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let n = text
            .matches(r#"{"event": "keepalive", "counter": 0, "uuid": 0}"#)
            .count();
        assert!(n >= 2, "expected keepalives, got {text:?}");
        assert!(
            text.ends_with("{\"eof\": true}\n"),
            "nothing may follow eof: {text:?}"
        );
    }
}
