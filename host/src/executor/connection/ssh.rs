//! The `ssh` connection: a pure-Rust client (russh), one connection per host opened on first use
//! and reused for every module of the job; plain commands and sudo go through a few persistent
//! remote shells, the rest through one channel per command.

use super::pool::{Pool, Slot};
use super::{CommandOutput, Running, Unreachable, find};
use crate::executor::login::{Become, HostAccess};
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;

/// An SSH connection to one host, opened on first use and kept while the job's connection
/// budget allows (closed when idle the longest and another host needs its slot, reopened when
/// needed again).
pub struct SshConnection {
    /// Address, port, user, credentials.
    pub access: HostAccess,
    session: AsyncMutex<Option<Arc<Handle<Client>>>>,
    /// The job's budget of open connections (None: unbounded).
    pool: Option<Arc<Pool>>,
    /// The budget's slot, held while the session is open.
    slot: std::sync::Mutex<Option<Slot>>,
    /// Calls in progress on this host: a busy connection is never closed for another host.
    busy: AtomicUsize,
    /// Orders a call's start against the pool's check-and-close of an idle connection.
    entering: std::sync::Mutex<()>,
    /// When the last call on this host ended.
    last_used: std::sync::Mutex<Instant>,
    /// Sessions opened so far: what was started on an earlier one is gone with it.
    generation: AtomicU64,
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
            crate::executor::modules::quote(cmdline)
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
    /// A connection to the host `access` describes, open only while it holds a slot of `pool`;
    /// nothing is dialled until the first command.
    pub fn new(access: HostAccess, pool: Option<Arc<Pool>>) -> SshConnection {
        SshConnection {
            access,
            session: AsyncMutex::new(None),
            pool,
            slot: std::sync::Mutex::new(None),
            busy: AtomicUsize::new(0),
            last_used: std::sync::Mutex::new(Instant::now()),
            generation: AtomicU64::new(0),
            entering: std::sync::Mutex::new(()),
            shells: std::sync::Mutex::new(Vec::new()),
            jump: std::sync::Mutex::new(None),
            sudo_nopasswd: AsyncMutex::new(std::collections::HashMap::new()),
        }
    }

    /// Drop the session and its shells (and the budget's slot), so the next command reconnects.
    pub(super) async fn reset(&self) {
        let mut session = self.session.lock().await;
        self.close(&mut session);
    }

    /// Close `session` (its lock held): shells, jump host and slot go with it. The session is
    /// ended explicitly (channels kept elsewhere, such as a resident runner's, would keep its
    /// socket open), and the slot is given back only once it has ended, so the budget counts
    /// every socket still open.
    fn close(&self, session: &mut Option<Arc<Handle<Client>>>) {
        // What was started on this session (a resident runner) is gone with it, even before
        // the next session opens.
        self.generation.fetch_add(1, Ordering::SeqCst);
        let handles: Vec<Arc<Handle<Client>>> = session
            .take()
            .into_iter()
            .chain(self.jump.lock().unwrap_or_else(|e| e.into_inner()).take())
            .collect();
        self.shells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if handles.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for h in &handles {
                let _ = h
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while handles.iter().any(|h| !h.is_closed()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(handles);
            drop(slot);
        });
    }

    /// Close the connection if it is open and no call is in progress on its host; whether it
    /// was (its slot is then free).
    pub(super) fn close_if_idle(&self) -> bool {
        let Ok(mut session) = self.session.try_lock() else {
            return false;
        };
        // Held while deciding and closing: a call that enters meanwhile waits, then finds the
        // connection closed (and reopens it) rather than using it as it closes.
        let _entering = self.entering.lock().unwrap_or_else(|e| e.into_inner());
        if self.busy.load(Ordering::SeqCst) != 0 || !self.holds_slot() {
            return false;
        }
        crate::debugln!(
            "closing the idle connection to {} for another host (connection budget)",
            self.access.name
        );
        if let Some(slot) = self.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            slot.mark_returning();
        }
        self.close(&mut session);
        true
    }

    fn holds_slot(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether the connection holds a slot and no call is in progress on its host.
    pub(super) fn is_open_and_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0 && self.holds_slot()
    }

    /// When the last call on this host ended.
    pub(super) fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions opened so far.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A call starts on this host.
    pub(super) fn enter(&self) {
        let _entering = self.entering.lock().unwrap_or_else(|e| e.into_inner());
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// A call on this host ended.
    pub(super) fn leave(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if self.busy.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(pool) = &self.pool
        {
            pool.went_idle();
        }
    }

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
        // A slot of the job's budget first (kept from a session that died by itself).
        let held = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let budget_slot = match (held, &self.pool) {
            (Some(held), _) => Some(held),
            (None, Some(pool)) => Some(pool.acquire(self).await),
            (None, None) => None,
        };
        let t0 = std::time::Instant::now();
        let a = &self.access;
        // Boxed here and below: an async fn's future is as large as its largest await, and
        // every call on a host would otherwise carry the handshake's state (issue 13: memory
        // per host at a thousand hosts).
        let s = match Box::pin(self.connect()).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                crate::debugln!("ssh {}@{}:{} failed: {}", a.user, a.address, a.port, e.0);
                return Err(e);
            }
        };
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = budget_slot;
        self.generation.fetch_add(1, Ordering::SeqCst);
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
    pub(super) async fn sudo_in_shell(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        b: &Become,
    ) -> Result<Option<CommandOutput>, Unreachable> {
        let user = crate::executor::modules::quote(&b.user);
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
        let inner = crate::executor::modules::quote(cmdline);
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

    pub(super) async fn run_in_shell(
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
            match Box::pin(ShellWorker::start(&session)).await {
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

    /// Start `cmdline` on a new channel, in a terminal with `pty` (`crlf`: with `\r\n` line ends).
    pub(super) async fn start(
        &self,
        cmdline: &str,
        pty: bool,
        crlf: bool,
    ) -> Result<Running, Unreachable> {
        for attempt in 0..2 {
            let session = self.session().await?;
            match session.channel_open_session().await {
                Ok(channel) => {
                    if pty {
                        // No echo, so the password never shows up in the output.
                        let modes = [(russh::Pty::ECHO, 0), (russh::Pty::ONLCR, u32::from(crlf))];
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

#[cfg(test)]
mod tests {
    /// A job keeps one russh session per host, and each session has four channels whose blocks
    /// hold 32 messages each: at 552 bytes a message (a certificate inline), ~71 KB per host
    /// (issue 13). The vendored russh boxes those variants (host/vendor/russh/README.md); with an
    /// unpatched russh this fails.
    #[test]
    fn russh_messages_stay_small() {
        let size = std::mem::size_of::<russh::client::Msg>();
        assert!(size <= 160, "russh::client::Msg is {size} bytes");
    }
}
