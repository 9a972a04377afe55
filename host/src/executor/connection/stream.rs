//! A long-lived command on a host whose stdin and stdout carry a protocol of our own (the
//! resident module runner), started through become like any other command.

use super::become_plan::Plan;
use super::{Chunk, Connection, Running, Unreachable, find};
use crate::executor::login::Become;

/// Stderr kept for the message when the command ends unexpectedly.
const STDERR_TAIL: usize = 4096;

/// A started long-lived command: write to its stdin, read its stdout.
pub struct Stream {
    running: Running,
    buf: Vec<u8>,
    stderr: Vec<u8>,
}

impl Connection {
    /// Start `cmdline` on the host for a conversation over its stdin/stdout; through `via` when
    /// given (sudo's prompt is answered; su and doas, which want a terminal, are not offered).
    /// The inner error says why no stream could be had here (the caller falls back).
    pub async fn open_stream(
        &self,
        cmdline: &str,
        via: Option<&Become>,
    ) -> Result<Result<Stream, String>, Unreachable> {
        let plan = Plan::new(cmdline, via, None);
        if plan.pty {
            return Ok(Err(format!(
                "{} asks for its password on a terminal",
                plan.method
            )));
        }
        let running = match self {
            Connection::Local(l) => l.start(&plan.command)?,
            Connection::Ssh(s) => s.start(&plan.command, false, false).await?,
        };
        let mut stream = Stream {
            running,
            buf: Vec::new(),
            stderr: Vec::new(),
        };
        Ok(match &plan.marker {
            Some(marker) => stream.become_(&plan, marker).await.map(|()| stream),
            None => Ok(stream),
        })
    }
}

impl Stream {
    /// Wait for become's success marker, answering its password prompt once.
    async fn become_(&mut self, plan: &Plan, marker: &str) -> Result<(), String> {
        let mut answered = false;
        loop {
            if let Some(pos) = find(&self.buf, marker.as_bytes()) {
                let mut end = pos + marker.len();
                if self.buf.get(end) == Some(&b'\n') {
                    end += 1;
                }
                self.buf.drain(..end);
                return Ok(());
            }
            if let Some(prompt) = &plan.prompt
                && let Some(pos) = find(&self.stderr, prompt.as_bytes())
            {
                self.stderr.drain(pos..pos + prompt.len());
                match (&plan.password, answered) {
                    (Some(pw), false) => {
                        self.running.write(format!("{pw}\n").as_bytes()).await;
                        answered = true;
                    }
                    (None, _) => return Err(format!("Missing {} password", plan.method)),
                    (Some(_), true) => return Err(format!("Incorrect {} password", plan.method)),
                }
            }
            self.fill()
                .await
                .map_err(|e| format!("{} failed: {e}", plan.method))?;
        }
    }

    /// Read more of stdout into the buffer (stderr is kept aside); an error once it has ended.
    async fn fill(&mut self) -> Result<(), String> {
        match self.running.next().await {
            Some(Chunk::Out(d)) => self.buf.extend_from_slice(&d),
            Some(Chunk::Err(d)) => {
                self.stderr.extend_from_slice(&d);
                if self.stderr.len() > STDERR_TAIL {
                    let cut = self.stderr.len() - STDERR_TAIL;
                    self.stderr.drain(..cut);
                }
            }
            Some(Chunk::Exit(rc)) => {
                return Err(format!(
                    "it exited (rc {rc}): {}",
                    String::from_utf8_lossy(&self.stderr).trim()
                ));
            }
            None => return Err("it closed its output".into()),
        }
        Ok(())
    }

    /// Send bytes to its stdin.
    pub async fn write(&mut self, data: &[u8]) {
        self.running.write(data).await;
    }

    /// The next line of its stdout, without the newline.
    pub async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Exactly `n` bytes of its stdout.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }
}

/// What a relayed command produced next (see [`Stream::next_piece`]).
pub enum Piece {
    /// Bytes of its stdout.
    Out(Vec<u8>),
    /// Bytes of its stderr.
    Err(Vec<u8>),
    /// Its exit status (-1: killed by a signal).
    Exit(i32),
}

impl Stream {
    /// The next output of the command as it comes, for relaying it elsewhere unchanged (what
    /// was read while waiting for become comes first); None once it has ended.
    pub async fn next_piece(&mut self) -> Option<Piece> {
        if !self.buf.is_empty() {
            return Some(Piece::Out(std::mem::take(&mut self.buf)));
        }
        if !self.stderr.is_empty() {
            return Some(Piece::Err(std::mem::take(&mut self.stderr)));
        }
        Some(match self.running.next().await? {
            Chunk::Out(d) => Piece::Out(d),
            Chunk::Err(d) => Piece::Err(d),
            Chunk::Exit(rc) => Piece::Exit(rc),
        })
    }

    /// Its stdin as a writer of its own, to feed it from another task while its output is
    /// read here (shut the writer down to end the input); None where there is none.
    pub fn take_input(&mut self) -> Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>> {
        self.running.take_input()
    }
}
