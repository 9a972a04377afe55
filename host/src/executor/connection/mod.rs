//! How commands reach a host. Modules are written against [`Connection`], which runs a shell
//! command line on the target (optionally through become) and returns its output.
//!
//! - `local`: processes spawned on the EE itself (in a pseudo-terminal for su/doas passwords).
//! - `ssh`: a pure-Rust client (russh); one connection per host, opened on first use and reused
//!   for every module of the job, one channel per command; the job's `Pool` bounds how many are
//!   open at once (the descriptor limit), closing the least recently used idle one when needed.
//!
//! A host that cannot be used at all comes back as [`Unreachable`] with the reason, worded like
//! OpenSSH so AWX users recognise it.
//!
//! Memory per host matters at a thousand hosts, where every host has a call in flight at once:
//! a call's future is as large as the largest state of everything it awaits, so the rarely
//! taken or large steps (the handshake, a runner's start, the Ansible paths, a local process's
//! read buffers) are boxed where they are awaited. A host's call went from ~150 KB to ~4 KB.
//! Most of what is left per connected host (~50 KB resident) is russh's own session: its task
//! (~15 KB) and four channels in blocks of 32 messages. The vendored russh
//! (host/vendor/russh/README.md) keeps the task from storing its future twice and the messages
//! at 136 bytes instead of 552, which took ~26 KB off every connection.

mod become_plan;
mod local;
mod pool;
mod ssh;
mod stream;

pub use local::LocalConnection;
pub use pool::Pool;
pub use ssh::{Client, SshConnection, decode_key};
pub use stream::{Piece, Stream};

use crate::executor::login::{Become, HostAccess};
use become_plan::Plan;
use russh::ChannelMsg;
use russh::client;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Output of one command run on a target.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Exit code (-1 if killed by a signal).
    pub rc: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error bytes.
    pub stderr: Vec<u8>,
}

/// A call in progress on a host (see [`Connection::busy`]).
pub struct Busy(Option<Arc<SshConnection>>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.leave();
        }
    }
}

/// Why a host could not be used at all (Ansible's "unreachable").
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

impl Unreachable {
    /// Whether the cause is the controller's own descriptor limit (EMFILE/ENFILE), not the host:
    /// such a failure must never be reported as the host being unreachable.
    pub fn is_local_limit(&self) -> bool {
        // std::io::Error's Display ends with "(os error N)".
        self.0.contains("(os error 24)") || self.0.contains("(os error 23)")
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A way to run commands on one host; cheap to clone (the SSH session is shared).
#[derive(Clone)]
pub enum Connection {
    /// Processes spawned on the controller (the EE) itself.
    Local(Arc<LocalConnection>),
    /// An SSH session to the host.
    Ssh(Arc<SshConnection>),
}

impl Connection {
    /// Build the connection a host's access settings ask for (SSH connects lazily, within
    /// the job's connection budget `pool`).
    pub fn new(access: HostAccess, env: Vec<(String, String)>, pool: &Arc<Pool>) -> Connection {
        if access.connection == "local" {
            Connection::Local(Arc::new(LocalConnection {
                name: access.name.clone(),
                env,
                access,
            }))
        } else {
            let ssh = Arc::new(SshConnection::new(access, Some(Arc::clone(pool))));
            pool.register(&ssh);
            Connection::Ssh(ssh)
        }
    }

    /// Mark a call in progress on this host until the guard is dropped: a busy connection is
    /// never closed to free a slot for another host.
    pub fn busy(&self) -> Busy {
        match self {
            Connection::Ssh(s) => {
                s.enter();
                Busy(Some(Arc::clone(s)))
            }
            Connection::Local(_) => Busy(None),
        }
    }

    /// Changes whenever the connection is reopened: what was started on the host through an
    /// earlier session (a resident runner) is gone.
    pub fn generation(&self) -> u64 {
        match self {
            Connection::Ssh(s) => s.generation(),
            Connection::Local(_) => 0,
        }
    }

    /// How this host is reached (user, become, ...).
    pub fn access(&self) -> &HostAccess {
        match self {
            Connection::Local(l) => &l.access,
            Connection::Ssh(s) => &s.access,
        }
    }

    /// Run `cmdline` with `/bin/sh -c` on the target, feeding `stdin` if given, as the login user.
    pub async fn exec(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, Unreachable> {
        self.exec_as(cmdline, stdin, None, timeout).await
    }

    /// Run `argv` without a shell where that is cheaper and the same (on the controller,
    /// without become); None: use [`Connection::exec_as`] with the words quoted.
    pub async fn run_argv(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        via: Option<&Become>,
    ) -> Option<CommandOutput> {
        match self {
            Connection::Local(l) if via.is_none() => l.run_argv(argv, stdin).await,
            _ => None,
        }
    }

    /// Run `cmdline`, through `become` when given (sudo/su/doas, answering the password prompt).
    pub async fn exec_as(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        via: Option<&Become>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, Unreachable> {
        let plan = Plan::new(cmdline, via, stdin);
        let fut = async {
            let out = self.exec_with(&plan, cmdline, stdin, via, true).await?;
            // sudo with `requiretty` refuses before running anything: again, in a terminal.
            if out.rc != 0
                && via.is_some_and(Become::is_sudo)
                && become_plan::wants_terminal(&out.stderr)
            {
                let plan = Plan::in_terminal(cmdline, via, stdin);
                return self.exec_with(&plan, cmdline, stdin, via, false).await;
            }
            Ok(out)
        };
        match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Ok(CommandOutput {
                    rc: -1,
                    stdout: Vec::new(),
                    stderr: format!("command timed out after {} s", t.as_secs()).into_bytes(),
                }),
            },
            None => fut.await,
        }
    }

    /// Run `cmdline` in a terminal, through `become` when given: its output as a terminal gives
    /// it (stderr merged into stdout, `\r\n` line ends), as Ansible's `ssh -tt` commands see it.
    pub async fn exec_in_terminal(
        &self,
        cmdline: &str,
        via: Option<&Become>,
    ) -> Result<CommandOutput, Unreachable> {
        let plan = Plan::like_ssh_tt(cmdline, via);
        self.exec_with(&plan, cmdline, None, via, false).await
    }

    /// Run `cmdline` as `plan` says; with `shell`, plain and sudo commands over SSH go through
    /// a persistent remote shell instead.
    async fn exec_with(
        &self,
        plan: &Plan,
        cmdline: &str,
        stdin: Option<&[u8]>,
        via: Option<&Become>,
        shell: bool,
    ) -> Result<CommandOutput, Unreachable> {
        {
            // Over SSH, plain commands go through a persistent remote shell: a new SSH session
            // per command costs the target sshd a fork and a login (~80 ms here); a line to an
            // open shell costs a fork of sh.
            if let Connection::Ssh(s) = self
                && shell
            {
                match via {
                    None => {
                        if let Some(out) = s.run_in_shell(cmdline, stdin).await? {
                            return Ok(out);
                        }
                    }
                    // sudo needs no terminal: it goes through the shell too, when we can tell in
                    // advance whether it will ask for a password (see `sudo_in_shell`).
                    Some(b) if b.is_sudo() => {
                        if let Some(out) = s.sudo_in_shell(cmdline, stdin, b).await? {
                            return Ok(out);
                        }
                    }
                    Some(_) => {}
                }
            }
            let mut running = match self {
                Connection::Local(l) if plan.pty => l.start_in_pty(&plan.command)?,
                Connection::Local(l) => l.start(&plan.command)?,
                Connection::Ssh(s) => s.start(&plan.command, plan.pty, plan.crlf).await?,
            };
            drive(&mut running, stdin, plan).await
        }
    }

    /// The address shown as `remote_addr`.
    pub fn remote_addr(&self) -> String {
        match self {
            Connection::Local(l) => l.name.clone(),
            Connection::Ssh(s) => s.access.address.clone(),
        }
    }

    /// Close the SSH session (and drop it from the cache), so the next command reconnects.
    pub async fn reset(&self) {
        if let Connection::Ssh(s) = self {
            s.reset().await;
        }
    }
}

enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
    Exit(i32),
}

/// A started command on either kind of connection.
enum Running {
    Local {
        child: tokio::process::Child,
        out_done: bool,
        err_done: bool,
    },
    /// A local process on a new pseudo-terminal (su/doas with a password): its output, stdout
    /// and stderr merged as a terminal merges them, comes from a reader thread.
    LocalPty {
        child: tokio::process::Child,
        output: tokio::sync::mpsc::Receiver<Vec<u8>>,
        master: std::fs::File,
        exited: bool,
    },
    Ssh {
        channel: russh::Channel<client::Msg>,
        exit: Option<i32>,
    },
}

impl Running {
    async fn next(&mut self) -> Option<Chunk> {
        match self {
            // Boxed: its read buffers would otherwise be part of every future that waits on a
            // command, SSH ones included (issue 13: memory per host).
            Running::Local {
                child,
                out_done,
                err_done,
            } => Box::pin(next_local(child, out_done, err_done)).await,
            Running::LocalPty {
                child,
                output,
                exited,
                ..
            } => {
                if *exited {
                    return None;
                }
                if let Some(data) = output.recv().await {
                    return Some(Chunk::Out(data));
                }
                *exited = true;
                let status = child.wait().await.ok()?;
                Some(Chunk::Exit(status.code().unwrap_or(-1)))
            }
            Running::Ssh { channel, exit } => loop {
                match channel.wait().await {
                    Some(ChannelMsg::Data { data }) => return Some(Chunk::Out(data.to_vec())),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        return Some(Chunk::Err(data.to_vec()));
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        *exit = Some(exit_status as i32)
                    }
                    Some(ChannelMsg::ExitSignal { .. }) => *exit = Some(-1),
                    Some(_) => {}
                    None => {
                        return exit.take().map(Chunk::Exit);
                    }
                }
            },
        }
    }

    async fn write(&mut self, data: &[u8]) {
        match self {
            Running::Local { child, .. } => {
                if let Some(s) = child.stdin.as_mut() {
                    let _ = s.write_all(data).await;
                }
            }
            Running::LocalPty { master, .. } => {
                // Input beyond the terminal's buffer blocks until the command reads it: off the
                // async threads.
                if let Ok(mut m) = master.try_clone() {
                    let data = data.to_vec();
                    let _ = tokio::task::spawn_blocking(move || {
                        std::io::Write::write_all(&mut m, &data)
                    })
                    .await;
                }
            }
            Running::Ssh { channel, .. } => {
                let _ = channel.data(data).await;
            }
        }
    }

    /// Write `data` (if any) and close stdin, without blocking the reader: a command that echoes
    /// a large input back must not deadlock against us.
    async fn feed_and_close(&mut self, data: Option<&[u8]>) {
        match self {
            Running::Local { child, .. } => {
                if let Some(mut s) = child.stdin.take() {
                    let data = data.map(|d| d.to_vec());
                    tokio::spawn(async move {
                        if let Some(d) = data {
                            let _ = s.write_all(&d).await;
                        }
                        let _ = s.shutdown().await;
                    });
                }
            }
            Running::LocalPty { .. } => {}
            Running::Ssh { .. } => {
                if let Some(d) = data {
                    self.write(d).await;
                }
                self.close_stdin().await;
            }
        }
    }

    /// A writer for its stdin that lives apart from it, so input can be fed while its output
    /// is read (an SSH channel's window waits on the reader otherwise); shutting it down ends
    /// the input. None where input goes through a terminal.
    fn take_input(&mut self) -> Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>> {
        match self {
            Running::Local { child, .. } => child
                .stdin
                .take()
                .map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>),
            Running::LocalPty { .. } => None,
            Running::Ssh { channel, .. } => Some(Box::pin(channel.make_writer())),
        }
    }

    async fn close_stdin(&mut self) {
        match self {
            Running::Local { child, .. } => {
                if let Some(mut s) = child.stdin.take() {
                    let _ = s.shutdown().await;
                }
            }
            Running::LocalPty { .. } => {}
            Running::Ssh { channel, .. } => {
                let _ = channel.eof().await;
            }
        }
    }
}

/// The next chunk of a local process's stdout/stderr, or its exit once both have ended.
async fn next_local(
    child: &mut tokio::process::Child,
    out_done: &mut bool,
    err_done: &mut bool,
) -> Option<Chunk> {
    let mut ob = [0u8; 16384];
    let mut eb = [0u8; 16384];
    loop {
        if *out_done && *err_done {
            let status = child.wait().await.ok()?;
            *out_done = false; // report the exit once, then None
            *err_done = false;
            let _ = child.stdout.take();
            let _ = child.stderr.take();
            return Some(Chunk::Exit(status.code().unwrap_or(-1)));
        }
        if child.stdout.is_none() && child.stderr.is_none() {
            return None;
        }
        let (so, se) = (child.stdout.as_mut(), child.stderr.as_mut());
        tokio::select! {
            r = async { match so { Some(s) => s.read(&mut ob).await, None => std::future::pending().await } }, if !*out_done => {
                match r {
                    Ok(0) | Err(_) => *out_done = true,
                    Ok(n) => return Some(Chunk::Out(ob[..n].to_vec())),
                }
            }
            r = async { match se { Some(s) => s.read(&mut eb).await, None => std::future::pending().await } }, if !*err_done => {
                match r {
                    Ok(0) | Err(_) => *err_done = true,
                    Ok(n) => return Some(Chunk::Err(eb[..n].to_vec())),
                }
            }
        }
    }
}

/// Feed stdin, answer become's password prompt, strip become's marker, collect the output.
async fn drive(
    running: &mut Running,
    stdin: Option<&[u8]>,
    plan: &Plan,
) -> Result<CommandOutput, Unreachable> {
    let mut out = CommandOutput::default();
    let mut became = plan.marker.is_none();
    let mut answered = false;
    let (stdin, typed) = if plan.pty {
        (None, stdin.map(become_plan::pty_feed))
    } else {
        (stdin, None)
    };
    if became {
        running.feed_and_close(stdin).await;
    }
    while let Some(chunk) = running.next().await {
        match chunk {
            Chunk::Out(d) => {
                out.stdout.extend_from_slice(&d);
                if !became
                    && plan.pty
                    && let Some(prompt) = &plan.prompt
                    && find(&out.stdout, prompt.as_bytes()).is_some()
                    && find(
                        &out.stdout,
                        plan.marker.as_deref().unwrap_or("\0").as_bytes(),
                    )
                    .is_none()
                {
                    if let Err(failed) = answer(running, plan, &mut answered, &out).await {
                        return Ok(failed);
                    }
                    out.stdout.clear();
                }
                if !became
                    && let Some(marker) = &plan.marker
                    && let Some(pos) = find(&out.stdout, marker.as_bytes())
                {
                    // Everything up to and including the marker line is become's, not the command's.
                    let after = pos + marker.len();
                    let skip = match out.stdout.get(after..after + 2) {
                        Some(b"\r\n") => after + 2,
                        _ if out.stdout.get(after) == Some(&b'\n') => after + 1,
                        _ => after,
                    };
                    out.stdout.drain(..skip);
                    became = true;
                    if !plan.pty {
                        running.feed_and_close(stdin).await;
                    } else if let Some(data) = &typed {
                        running.write(data).await;
                    }
                }
            }
            Chunk::Err(d) => {
                out.stderr.extend_from_slice(&d);
                if !became
                    && let Some(prompt) = &plan.prompt
                    && find(&out.stderr, prompt.as_bytes()).is_some()
                {
                    if let Err(failed) = answer(running, plan, &mut answered, &out).await {
                        return Ok(failed);
                    }
                    // Drop the prompt text so a second prompt is recognised as a wrong password.
                    if let Some(pos) = find(&out.stderr, prompt.as_bytes()) {
                        out.stderr.drain(pos..pos + prompt.len());
                    }
                }
            }
            Chunk::Exit(rc) => {
                out.rc = rc;
                if !became && answered {
                    // su and doas give up after one wrong password instead of asking again.
                    return Ok(become_failure(plan, "Incorrect", &out));
                }
                if !became {
                    // Become itself failed (no sudo, user unknown, not allowed).
                    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    if msg.is_empty() {
                        msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    }
                    out.stderr = format!("{} failed: {msg}", plan.method).into_bytes();
                    if out.rc == 0 {
                        out.rc = 1;
                    }
                }
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Answer become's password prompt; the failed output when there is no password to give, or
/// when the prompt comes back after one was given (a wrong password).
async fn answer(
    running: &mut Running,
    plan: &Plan,
    answered: &mut bool,
    out: &CommandOutput,
) -> Result<(), CommandOutput> {
    if *answered {
        return Err(become_failure(plan, "Incorrect", out));
    }
    let Some(pw) = &plan.password else {
        return Err(become_failure(plan, "Missing", out));
    };
    running.write(format!("{pw}\n").as_bytes()).await;
    *answered = true;
    Ok(())
}

fn become_failure(plan: &Plan, what: &str, out: &CommandOutput) -> CommandOutput {
    let _ = out;
    CommandOutput {
        rc: 1,
        stdout: Vec::new(),
        stderr: format!("{what} {} password", plan.method).into_bytes(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(connection: &str) -> HostAccess {
        HostAccess {
            name: "h1".into(),
            connection: connection.into(),
            address: "127.0.0.1".into(),
            port: 1,
            user: "u".into(),
            key: None,
            password: None,
            become_: None,
            timeout: Duration::from_secs(5),
            host_key_checking: false,
            known_hosts: None,
            python: None,
            jump: None,
        }
    }

    /// Every host of a large job has a command in flight at once, each a future this size (a
    /// thousand hosts: issue 13). It once held a local process's two 16 KB read buffers and the
    /// SSH handshake's state, on every host, SSH ones included.
    #[test]
    fn a_command_in_flight_is_small() {
        let pool = Pool::new(8);
        for kind in ["ssh", "local"] {
            let conn = Connection::new(access(kind), Vec::new(), &pool);
            let size = std::mem::size_of_val(&conn.exec_as("true", None, None, None));
            assert!(size < 4096, "{kind}: a command's future is {size} bytes");
        }
    }
}
