//! How commands reach a host. Modules are written against [`Connection`], which runs a shell
//! command line on the target (optionally through become) and returns its output.
//!
//! - `local`: processes spawned on the EE itself (in a pseudo-terminal for su/doas passwords).
//! - `ssh`: a pure-Rust client (russh); one connection per host, opened on first use and reused
//!   for every module of the job, one channel per command.
//!
//! A host that cannot be used at all comes back as [`Unreachable`] with the reason, worded like
//! OpenSSH so AWX users recognise it.

use crate::executor::login::{Become, HostAccess};
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex as AsyncMutex;

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

/// Why a host could not be used at all (Ansible's "unreachable").
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

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
    /// Build the connection a host's access settings ask for (SSH connects lazily).
    pub fn new(access: HostAccess, env: Vec<(String, String)>) -> Connection {
        if access.connection == "local" {
            Connection::Local(Arc::new(LocalConnection {
                name: access.name.clone(),
                env,
                access,
            }))
        } else {
            Connection::Ssh(Arc::new(SshConnection {
                access,
                session: AsyncMutex::new(None),
                shells: std::sync::Mutex::new(Vec::new()),
                jump: std::sync::Mutex::new(None),
                sudo_nopasswd: AsyncMutex::new(std::collections::HashMap::new()),
            }))
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
            // Over SSH, plain commands go through a persistent remote shell: a new SSH session
            // per command costs the target sshd a fork and a login (~80 ms here); a line to an
            // open shell costs a fork of sh.
            if let Connection::Ssh(s) = self {
                match via {
                    None => {
                        if let Some(out) = s.run_in_shell(cmdline, stdin).await? {
                            return Ok(out);
                        }
                    }
                    // sudo needs no terminal: it goes through the shell too, when we can tell in
                    // advance whether it will ask for a password (see `sudo_in_shell`).
                    Some(b) if b.method.is_empty() || b.method == "sudo" => {
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
                Connection::Ssh(s) => s.start(&plan.command, plan.pty).await?,
            };
            drive(&mut running, stdin, &plan).await
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
            s.session.lock().await.take();
            s.shells.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// The command to start and how to recognise become's prompt and success.
struct Plan {
    command: String,
    marker: Option<String>,
    prompt: Option<String>,
    password: Option<String>,
    method: String,
    /// su and doas read passwords from a terminal only: run them in a PTY; the command's stdin
    /// then travels inside the command line (base64), since a PTY would mangle it.
    pty: bool,
}

impl Plan {
    fn new(cmdline: &str, via: Option<&Become>, stdin: Option<&[u8]>) -> Plan {
        let Some(b) = via else {
            return Plan {
                command: cmdline.to_string(),
                marker: None,
                prompt: None,
                password: None,
                method: String::new(),
                pty: false,
            };
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let marker = format!("BECOME-SUCCESS-{token}");
        let prompt = format!("[ftl2-become-password-{token}]:");
        let pty = matches!(b.method.as_str(), "su" | "doas") && b.password.is_some();
        let inner = match (pty, stdin) {
            (true, Some(data)) => {
                use base64::Engine;
                let enc = base64::engine::general_purpose::STANDARD.encode(data);
                format!(
                    "echo {marker}; printf %s {enc} | base64 -d | /bin/sh -c {}",
                    super::modules::quote(cmdline)
                )
            }
            (true, None) => format!(
                "echo {marker}; exec /bin/sh -c {} </dev/null",
                super::modules::quote(cmdline)
            ),
            _ => format!(
                "echo {marker}; exec /bin/sh -c {}",
                super::modules::quote(cmdline)
            ),
        };
        let user = super::modules::quote(&b.user);
        let flags = b.flags.clone().unwrap_or_default();
        let command = match b.method.as_str() {
            "su" => format!("su {flags} {user} -c {}", super::modules::quote(&inner)),
            "doas" => format!(
                "doas {flags} -u {user} /bin/sh -c {}",
                super::modules::quote(&inner)
            ),
            _ => format!(
                "sudo {} -S -p {} -u {user} /bin/sh -c {}",
                if flags.is_empty() {
                    "-H".to_string()
                } else {
                    flags
                },
                super::modules::quote(&prompt),
                super::modules::quote(&inner)
            ),
        };
        Plan {
            command,
            marker: Some(marker),
            prompt: Some(if b.method == "sudo" || b.method.is_empty() {
                prompt
            } else {
                "assword".into()
            }),
            password: b.password.clone(),
            pty,
            method: if b.method.is_empty() {
                "sudo".into()
            } else {
                b.method.clone()
            },
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
            Running::Local {
                child,
                out_done,
                err_done,
            } => {
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
                // A password line: far below the terminal's buffer, so this never blocks.
                let _ = std::io::Write::write_all(master, data);
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

/// Feed stdin, answer become's password prompt, strip become's marker, collect the output.
async fn drive(
    running: &mut Running,
    stdin: Option<&[u8]>,
    plan: &Plan,
) -> Result<CommandOutput, Unreachable> {
    let mut out = CommandOutput::default();
    let mut became = plan.marker.is_none();
    let mut answered = false;
    let stdin = if plan.pty { None } else { stdin };
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
                    let skip = if out.stdout.get(after) == Some(&b'\n') {
                        after + 1
                    } else {
                        after
                    };
                    out.stdout.drain(..skip);
                    became = true;
                    if !plan.pty {
                        running.feed_and_close(stdin).await;
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

/// The `local` connection.
pub struct LocalConnection {
    /// Inventory name of the host.
    pub name: String,
    /// Extra environment for commands (the job's envvars).
    pub env: Vec<(String, String)>,
    /// Login and become settings.
    pub access: HostAccess,
}

impl LocalConnection {
    fn start(&self, cmdline: &str) -> Result<Running, Unreachable> {
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmdline)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Unreachable(format!("cannot start /bin/sh on the controller: {e}")))?;
        Ok(Running::Local {
            child,
            out_done: false,
            err_done: false,
        })
    }

    /// Start `cmdline` as the session leader of a new pseudo-terminal, which su and doas need
    /// to ask for a password (they read it from the controlling terminal, never from a pipe).
    fn start_in_pty(&self, cmdline: &str) -> Result<Running, Unreachable> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let fail = |what: &str, e: std::io::Error| {
            Unreachable(format!("cannot {what} for a local become: {e}"))
        };
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two new descriptors into the given ints; the name, termios and
        // window-size arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(fail(
                "open a pseudo-terminal",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        for fd in [&master, &slave] {
            // SAFETY: fcntl on a descriptor we own; keeps it out of other children.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // As over SSH: no echo, so the password never shows up in the output, and no \r\n.
        // SAFETY: tcgetattr fills a zeroed termios for a terminal we own; tcsetattr reads it.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
                t.c_lflag &= !libc::ECHO;
                t.c_oflag &= !libc::ONLCR;
                libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| fail("duplicate the terminal", e))
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(cmdline)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave))
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, then the
        // terminal on stdin becomes its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| fail("start /bin/sh on the controller", e))?;
        // Our copies of the terminal's slave side go with `cmd`, so the reader sees EIO (the
        // end) once the command and everything it started have exited.
        drop(cmd);
        let master = std::fs::File::from(master);
        let mut reader = master
            .try_clone()
            .map_err(|e| fail("duplicate the terminal", e))?;
        let (tx, output) = tokio::sync::mpsc::channel(16);
        std::thread::Builder::new()
            .name("local-pty".into())
            .spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = std::io::Read::read(&mut reader, &mut buf) {
                    if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| fail("start the terminal reader", e))?;
        Ok(Running::LocalPty {
            child,
            output,
            master,
            exited: false,
        })
    }
}

/// An SSH connection to one host, opened on first use and kept for the job.
pub struct SshConnection {
    /// Address, port, user, credentials.
    pub access: HostAccess,
    session: AsyncMutex<Option<Arc<Handle<Client>>>>,
    shells: std::sync::Mutex<Vec<Arc<AsyncMutex<Option<ShellWorker>>>>>,
    /// The jump host's session, kept open while the tunnelled session lives.
    jump: std::sync::Mutex<Option<Arc<Handle<Client>>>>,
    /// Per become user: does `sudo -n` work without a password (NOPASSWD)?
    sudo_nopasswd: AsyncMutex<std::collections::HashMap<String, bool>>,
}

/// Remote shells kept open per host (concurrent commands to one host beyond this wait).
const SHELLS_PER_HOST: usize = 4;

/// A `/bin/sh` reading commands from an SSH channel; each command's output comes back framed.
struct ShellWorker {
    channel: russh::Channel<client::Msg>,
    buf: Vec<u8>,
    /// Set while a command is in flight: still set later means the caller gave up half way (a
    /// timeout), and the shell's state is unknown, so it is replaced.
    dirty: bool,
}

impl ShellWorker {
    async fn start(session: &Handle<Client>) -> Result<ShellWorker, String> {
        let channel = session
            .channel_open_session()
            .await
            .map_err(|e| e.to_string())?;
        channel
            .exec(true, "exec /bin/sh")
            .await
            .map_err(|e| e.to_string())?;
        let mut w = ShellWorker {
            channel,
            buf: Vec::new(),
            dirty: false,
        };
        let setup = "d=$(mktemp -d /tmp/.ftl2-XXXXXX) || exit 1; trap 'rm -rf \"$d\"' EXIT; \
                     command -v base64 >/dev/null || exit 1; echo __FTL2_READY\n";
        w.channel
            .data(setup.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        w.read_until(b"__FTL2_READY\n").await?;
        Ok(w)
    }

    async fn fill(&mut self) -> Result<(), String> {
        loop {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.buf.extend_from_slice(&data);
                    return Ok(());
                }
                Some(ChannelMsg::ExtendedData { .. })
                | Some(ChannelMsg::WindowAdjusted { .. })
                | Some(ChannelMsg::Success) => {}
                Some(ChannelMsg::ExitStatus { .. })
                | Some(ChannelMsg::Eof)
                | Some(ChannelMsg::Close)
                | None => {
                    return Err("the remote shell closed".into());
                }
                Some(_) => {}
            }
        }
    }

    async fn read_until(&mut self, needle: &[u8]) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = find(&self.buf, needle) {
                let rest = self.buf.split_off(pos + needle.len());
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            self.fill().await?;
        }
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    async fn run(&mut self, cmdline: &str, stdin: Option<&[u8]>) -> Result<CommandOutput, String> {
        use base64::Engine;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut script = String::new();
        let input = match stdin {
            Some(data) => {
                script.push_str(&format!("base64 -d > \"$d/in\" <<'__FTL2_IN_{token}'\n"));
                let enc = base64::engine::general_purpose::STANDARD.encode(data);
                for chunk in enc.as_bytes().chunks(76) {
                    script.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                    script.push('\n');
                }
                script.push_str(&format!("__FTL2_IN_{token}\n"));
                "\"$d/in\""
            }
            None => "/dev/null",
        };
        script.push_str(&format!(
            "/bin/sh -c {} <{input} >\"$d/out\" 2>\"$d/err\"; rc=$?; \
             printf '__FTL2_DONE_{token} %d %d %d\\n' \"$rc\" \"$(wc -c <\"$d/out\")\" \"$(wc -c <\"$d/err\")\"; \
             cat \"$d/out\" \"$d/err\"\n",
            super::modules::quote(cmdline)
        ));
        self.dirty = true;
        self.channel
            .data(script.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let marker = format!("__FTL2_DONE_{token} ");
        self.read_until(marker.as_bytes()).await?;
        let header = self.read_until(b"\n").await?;
        let header = String::from_utf8_lossy(&header);
        let nums: Vec<i64> = header
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [rc, olen, elen] = nums[..] else {
            return Err(format!("garbled reply from the remote shell: {header:?}"));
        };
        let stdout = self.read_exact(olen.max(0) as usize).await?;
        let stderr = self.read_exact(elen.max(0) as usize).await?;
        self.dirty = false;
        Ok(CommandOutput {
            rc: rc as i32,
            stdout,
            stderr,
        })
    }
}

/// The russh client handler: decides whether to trust the server's host key.
pub struct Client {
    host: String,
    port: u16,
    check: bool,
    known_hosts: Option<std::path::PathBuf>,
    verdict: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if !self.check {
            return Ok(true);
        }
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.lock().unwrap() =
                Some("Host key verification failed (certificates are not supported).".into());
            return Ok(false);
        };
        let found = match &self.known_hosts {
            Some(p) => russh::keys::check_known_hosts_path(&self.host, self.port, key, p),
            None => russh::keys::check_known_hosts(&self.host, self.port, key),
        };
        match found {
            Ok(true) => Ok(true),
            Ok(false) => {
                *self.verdict.lock().unwrap() = Some(format!(
                    "Host key verification failed: no key for {}:{} in known_hosts (host key checking is on)",
                    self.host, self.port
                ));
                Ok(false)
            }
            Err(e) => {
                *self.verdict.lock().unwrap() = Some(format!("Host key verification failed: {e}"));
                Ok(false)
            }
        }
    }
}

fn is_connection_error(e: &russh::Error) -> bool {
    matches!(
        e,
        russh::Error::IO(_)
            | russh::Error::Disconnect
            | russh::Error::SendError
            | russh::Error::RecvError
    )
}

impl SshConnection {
    fn fail(&self, what: impl std::fmt::Display) -> Unreachable {
        Unreachable(format!("Failed to connect to the host via ssh: {what}"))
    }

    async fn session(&self) -> Result<Arc<Handle<Client>>, Unreachable> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(Arc::clone(s));
        }
        let t0 = std::time::Instant::now();
        let a = &self.access;
        let s = match self.connect().await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                crate::debugln!("ssh {}@{}:{} failed: {}", a.user, a.address, a.port, e.0);
                return Err(e);
            }
        };
        crate::debugln!(
            "ssh {}@{}:{} connected in {} ms",
            a.user,
            a.address,
            a.port,
            t0.elapsed().as_millis()
        );
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    async fn connect(&self) -> Result<Handle<Client>, Unreachable> {
        let a = &self.access;
        let Some(jump) = &a.jump else {
            let tcp = self.dial(&a.address, a.port).await?;
            return self.handshake(tcp, &a.address, a.port, &a.user).await;
        };
        // ProxyJump: log in to the jump host, then tunnel to the target through it.
        let jump_user = jump.user.clone().unwrap_or_else(|| a.user.clone());
        let via_jump = |u: Unreachable| {
            Unreachable(format!("{} (jump host {}:{})", u.0, jump.host, jump.port))
        };
        let tcp = self.dial(&jump.host, jump.port).await.map_err(via_jump)?;
        let bastion = self
            .handshake(tcp, &jump.host, jump.port, &jump_user)
            .await
            .map_err(via_jump)?;
        let channel = bastion
            .channel_open_direct_tcpip(a.address.clone(), a.port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| {
                self.fail(format!(
                    "jump host {}:{} cannot reach {}:{}: {e}",
                    jump.host, jump.port, a.address, a.port
                ))
            })?;
        let handle = self
            .handshake(channel.into_stream(), &a.address, a.port, &a.user)
            .await?;
        *self.jump.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(bastion));
        Ok(handle)
    }

    async fn dial(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, Unreachable> {
        match tokio::time::timeout(
            self.access.timeout,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        {
            Err(_) => Err(self.fail(format!(
                "connect to host {host} port {port}: Connection timed out"
            ))),
            Ok(Err(e)) => {
                let why = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => "Connection refused".to_string(),
                    _ => e.to_string(),
                };
                Err(self.fail(format!("connect to host {host} port {port}: {why}")))
            }
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
    }

    /// SSH handshake, host key check and login over `stream`.
    async fn handshake<S>(
        &self,
        stream: S,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<Handle<Client>, Unreachable>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let a = &self.access;
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            ..Default::default()
        });
        let verdict = Arc::new(std::sync::Mutex::new(None));
        let handler = Client {
            host: host.to_string(),
            port,
            check: a.host_key_checking,
            known_hosts: a.known_hosts.clone(),
            verdict: Arc::clone(&verdict),
        };
        let target = format!("{host}:{port}");
        let mut handle =
            match tokio::time::timeout(a.timeout, client::connect_stream(config, stream, handler))
                .await
            {
                Err(_) => return Err(self.fail(format!("{target}: SSH handshake timed out"))),
                Ok(Err(e)) => {
                    let v = verdict.lock().unwrap().take();
                    return Err(match v {
                        Some(v) => Unreachable(v),
                        None => self.fail(format!("{target}: {e}")),
                    });
                }
                Ok(Ok(h)) => h,
            };
        let mut tried = Vec::new();
        if let Some(key) = &a.key {
            tried.push("publickey");
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let auth = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                .await
                .map_err(|e| self.fail(format!("{target}: {e}")))?;
            if auth.success() {
                return Ok(handle);
            }
        }
        if let Some(pw) = &a.password {
            tried.push("password");
            let auth = handle
                .authenticate_password(user, pw.expose())
                .await
                .map_err(|e| self.fail(format!("{target}: {e}")))?;
            if auth.success() {
                return Ok(handle);
            }
        }
        if tried.is_empty() {
            return Err(self.fail(format!(
                "{user}@{target}: Permission denied: no SSH key or password for this host (give the job a machine credential)"
            )));
        }
        Err(self.fail(format!(
            "{user}@{target}: Permission denied ({}).",
            tried.join(",")
        )))
    }

    /// Run a plain command through one of this host's persistent shells; `None` when no shell
    /// can be used (the caller then opens a channel for the command itself).
    /// sudo through a persistent shell. Whether sudo will read a password is settled first
    /// (`sudo -n true` once per user): without one, `sudo -n`; with one, `sudo -k -S`, which then
    /// always reads it first from stdin, so the password can lead the command's input without
    /// ever reaching the command. `None` to fall back to a channel with a prompt watcher.
    async fn sudo_in_shell(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        b: &Become,
    ) -> Result<Option<CommandOutput>, Unreachable> {
        let user = super::modules::quote(&b.user);
        let flags = b.flags.clone().unwrap_or_else(|| "-H".into());
        let nopasswd = {
            let mut known = self.sudo_nopasswd.lock().await;
            match known.get(&b.user) {
                Some(v) => *v,
                None => {
                    let probe = format!("sudo -n {flags} -u {user} /bin/sh -c true");
                    let Some(out) = self.run_in_shell(&probe, None).await? else {
                        return Ok(None);
                    };
                    known.insert(b.user.clone(), out.rc == 0);
                    out.rc == 0
                }
            }
        };
        let inner = super::modules::quote(cmdline);
        if nopasswd {
            return self
                .run_in_shell(
                    &format!("sudo -n {flags} -u {user} /bin/sh -c {inner}"),
                    stdin,
                )
                .await;
        }
        let Some(pw) = &b.password else {
            return Ok(Some(CommandOutput {
                rc: 1,
                stdout: Vec::new(),
                stderr: b"Missing sudo password".to_vec(),
            }));
        };
        let mut input = format!("{pw}\n").into_bytes();
        input.extend_from_slice(stdin.unwrap_or_default());
        let cmd = format!("sudo -k -S -p '' {flags} -u {user} /bin/sh -c {inner}");
        let Some(mut out) = self.run_in_shell(&cmd, Some(&input)).await? else {
            return Ok(None);
        };
        let err = String::from_utf8_lossy(&out.stderr);
        if out.rc != 0 && (err.contains("incorrect password") || err.contains("Sorry, try again")) {
            out.stderr = b"Incorrect sudo password".to_vec();
            out.stdout.clear();
        }
        Ok(Some(out))
    }

    async fn run_in_shell(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Option<CommandOutput>, Unreachable> {
        let slot = {
            let mut shells = self.shells.lock().unwrap_or_else(|e| e.into_inner());
            match shells.iter().find(|s| s.try_lock().is_ok()) {
                Some(s) => Arc::clone(s),
                None if shells.len() < SHELLS_PER_HOST => {
                    let s = Arc::new(AsyncMutex::new(None));
                    shells.push(Arc::clone(&s));
                    s
                }
                None => Arc::clone(&shells[0]),
            }
        };
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|w| w.dirty) {
            *guard = None;
        }
        if guard.is_none() {
            let session = self.session().await?;
            match ShellWorker::start(&session).await {
                Ok(w) => *guard = Some(w),
                Err(_) => return Ok(None),
            }
        }
        let Some(worker) = guard.as_mut() else {
            return Ok(None);
        };
        match worker.run(cmdline, stdin).await {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                // The command may have run: never run it twice. Forget the shell and report.
                *guard = None;
                Err(self.fail(format!(
                    "lost the remote shell while running a command: {e}"
                )))
            }
        }
    }

    async fn start(&self, cmdline: &str, pty: bool) -> Result<Running, Unreachable> {
        for attempt in 0..2 {
            let session = self.session().await?;
            match session.channel_open_session().await {
                Ok(channel) => {
                    if pty {
                        // No echo, so the password never shows up in the output.
                        let modes = [(russh::Pty::ECHO, 0), (russh::Pty::ONLCR, 0)];
                        channel
                            .request_pty(true, "dumb", 200, 50, 0, 0, &modes)
                            .await
                            .map_err(|e| self.fail(format!("cannot get a terminal: {e}")))?;
                    }
                    channel
                        .exec(true, cmdline.as_bytes())
                        .await
                        .map_err(|e| self.fail(format!("cannot run a command: {e}")))?;
                    return Ok(Running::Ssh {
                        channel,
                        exit: None,
                    });
                }
                // A session that died since its last use is reopened once.
                Err(e) if attempt == 0 && (is_connection_error(&e) || session.is_closed()) => {
                    self.session.lock().await.take();
                }
                Err(e) => return Err(self.fail(format!("cannot open a channel: {e}"))),
            }
        }
        Err(self.fail("the connection keeps closing"))
    }
}

/// Decode a private key (OpenSSH or PEM), with its passphrase if it has one.
pub fn decode_key(pem: &str, passphrase: Option<&str>) -> Result<Arc<PrivateKey>, String> {
    russh::keys::decode_secret_key(pem, passphrase)
        .map(Arc::new)
        .map_err(|e| format!("cannot read the SSH private key: {e}"))
}
