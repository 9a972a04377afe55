//! rsync's `ssh`, answered over our own connections.
//!
//! `ansible.posix.synchronize` runs rsync on the controller, and rsync starts
//! `ssh [options] [-l user] host rsync --server ...` to reach the host. We put a program named
//! `ssh` (this binary, see [`shim_main`]) first on the module's PATH; it hands its command line
//! and stdin to the worker over a Unix socket in a private directory, and the worker runs that
//! `rsync --server` on the host over the task's own connection (its key or password, jump
//! host and host key policy), relaying stdout, stderr and the exit status back. So no key is
//! written to disk, no OpenSSH client or sshpass is needed in the EE, and rsync reaches exactly
//! the host the task is for: the only commands relayed are rsync servers of a synchronize call
//! in progress, to the host that call registered.
//!
//! Frames from the worker to the shim: one tag byte (`o` stdout, `e` stderr, `x` exit status),
//! a big-endian u32 length, the bytes (for `x`, the status as decimal text). From the shim to
//! the worker: one JSON line (`host`, `user`, `port`, `command`), then its stdin, raw.

use crate::executor::connection::{Connection, LocalConnection, Piece};
use crate::executor::login::HostAccess;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The socket's name beside the `ssh` program in the bridge's directory.
const SOCKET: &str = "sock";
/// Longest header line the worker reads from a shim.
const MAX_HEADER: usize = 64 * 1024;
/// ssh options that take a value (`ssh(1)`).
const SSH_VALUE_OPTS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Where a synchronize call's rsync may go: the target as the module will name it, the host's
/// connection, and the rsync program the module will start there.
struct Route {
    id: u64,
    host: String,
    port: Option<u16>,
    user: Option<String>,
    rsync_path: String,
    conn: Connection,
}

/// The job's bridge: started by the first synchronize call, gone (socket directory removed,
/// listener stopped) with the job.
pub struct Bridge {
    dir: PathBuf,
    routes: Arc<Mutex<Vec<Route>>>,
    next_id: std::sync::atomic::AtomicU64,
    listener: tokio::task::JoinHandle<()>,
    /// The controller as synchronize's module sees it: the local connection with our `ssh`
    /// first on PATH.
    pub controller: Connection,
}

/// A registered route; unregistered when dropped (the call ended).
pub struct RouteGuard {
    routes: Arc<Mutex<Vec<Route>>>,
    id: u64,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.id != self.id);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.listener.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bridge {
    /// Make the private directory (`ssh` -> this binary, the socket) and start listening; the
    /// controller connection gets the job's environment `env` with the directory first on PATH.
    pub fn start(env: &[(String, String)], access: HostAccess) -> Result<Bridge, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("ftl2-rsync-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let made = (|| {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find ftl2-runner's own program: {e}"))?;
            std::os::unix::fs::symlink(&exe, dir.join("ssh"))
                .map_err(|e| format!("cannot link {}: {e}", dir.join("ssh").display()))?;
            tokio::net::UnixListener::bind(dir.join(SOCKET))
                .map_err(|e| format!("cannot listen on {}: {e}", dir.join(SOCKET).display()))
        })();
        let listener = match made {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let routes: Arc<Mutex<Vec<Route>>> = Arc::default();
        let serving = Arc::clone(&routes);
        let listener = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, Arc::clone(&serving)));
            }
        });
        let mut env = env.to_vec();
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        env.retain(|(k, _)| k != "PATH");
        env.push(("PATH".into(), format!("{}:{path}", dir.display())));
        let controller = Connection::Local(Arc::new(LocalConnection {
            name: "localhost".into(),
            env,
            access,
        }));
        Ok(Bridge {
            dir,
            routes,
            next_id: Default::default(),
            listener,
            controller,
        })
    }

    /// Let rsync servers for `[user@]host[:port]` running `rsync_path` reach `conn` until the
    /// guard is dropped.
    pub fn route(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
        rsync_path: &str,
        conn: &Connection,
    ) -> RouteGuard {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Route {
                id,
                host: host.to_string(),
                port,
                user: user.map(String::from),
                rsync_path: rsync_path.to_string(),
                conn: conn.clone(),
            });
        RouteGuard {
            routes: Arc::clone(&self.routes),
            id,
        }
    }
}

/// One shim's connection: find its route, run its command on the host, relay until it exits.
async fn serve(sock: tokio::net::UnixStream, routes: Arc<Mutex<Vec<Route>>>) {
    let (r, mut w) = sock.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut line = Vec::new();
    let header = match (&mut r)
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut line)
        .await
    {
        Ok(_) => serde_json::from_slice::<Value>(&line).ok(),
        Err(_) => None,
    };
    let Some(header) = header else {
        return refuse(
            &mut w,
            "ftl2-runner: a malformed request reached rsync's ssh bridge",
        )
        .await;
    };
    let text = |k: &str| header.get(k).and_then(Value::as_str).map(String::from);
    let host = text("host").unwrap_or_default();
    let user = text("user");
    let port = header
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    let command = text("command").unwrap_or_default();
    // Hosts sharing an address, port and user are one endpoint; their calls may still differ
    // in the rsync they start (become users): the route whose rsync the command starts.
    let (found, others) = {
        let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
        let to_target: Vec<&Route> = routes
            .iter()
            .filter(|r| r.host == host && r.port == port && (user.is_none() || r.user == user))
            .collect();
        let found = to_target
            .iter()
            .find(|r| command.starts_with(&format!("{} --server ", r.rsync_path)))
            .map(|r| r.conn.clone());
        (found, to_target.first().map(|r| r.rsync_path.clone()))
    };
    let target = format!(
        "{}{host}{}",
        user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(),
        port.map(|p| format!(":{p}")).unwrap_or_default()
    );
    let Some(conn) = found else {
        let why = match others {
            Some(rsync_path) => format!(
                "ftl2-runner: only `{rsync_path} --server ...` is run on {target} for \
                 synchronize, not `{command}`"
            ),
            None => format!(
                "ftl2-runner: rsync asked to reach {target}, which is not the host of a \
                 synchronize task in progress"
            ),
        };
        return refuse(&mut w, &why).await;
    };
    let _busy = conn.busy();
    let mut stream = match conn.open_stream(&command, None).await {
        Ok(Ok(s)) => s,
        Ok(Err(why)) => return refuse(&mut w, &format!("ftl2-runner: {why}")).await,
        Err(unreachable) => {
            return refuse(&mut w, &format!("ssh: {unreachable}")).await;
        }
    };
    // rsync's input goes to the host from a task of its own: the output must keep being read
    // meanwhile, or a full SSH window and a full socket would wait on each other.
    let pending = r.buffer().to_vec();
    let mut r = r.into_inner();
    let feeder = stream.take_input().map(|mut input| {
        tokio::spawn(async move {
            if input.write_all(&pending).await.is_ok() {
                let _ = tokio::io::copy(&mut r, &mut input).await;
            }
            let _ = input.shutdown().await;
        })
    });
    loop {
        let (tag, data) = match stream.next_piece().await {
            Some(Piece::Out(d)) => (b'o', d),
            Some(Piece::Err(d)) => (b'e', d),
            Some(Piece::Exit(rc)) => (b'x', rc.to_string().into_bytes()),
            None => (b'x', b"255".to_vec()),
        };
        if frame(&mut w, tag, &data).await.is_err() || tag == b'x' {
            break;
        }
    }
    if let Some(f) = feeder {
        f.abort();
    }
}

/// Tell the shim why nothing runs (its stderr) and end it as ssh ends a failed connection.
async fn refuse(w: &mut tokio::net::unix::OwnedWriteHalf, msg: &str) {
    let _ = frame(w, b'e', format!("{msg}\n").as_bytes()).await;
    let _ = frame(w, b'x', b"255").await;
}

async fn frame(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    tag: u8,
    data: &[u8],
) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(data).await
}

/// Whether this process was started as the bridge's `ssh` (its program name).
pub fn is_shim(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0).file_name() == Some(std::ffi::OsStr::new("ssh"))
}

/// What rsync asked ssh for: the target and the remote command.
#[derive(Debug, PartialEq)]
struct SshRequest {
    host: String,
    user: Option<String>,
    port: Option<u16>,
    command: String,
}

/// Read ssh's command line as ssh does: options (some with a value, joined or separate),
/// `[user@]host`, then the remote command's words joined by spaces.
fn parse_ssh_args(args: &[String]) -> Result<SshRequest, String> {
    let mut user = None;
    let mut port = None;
    let mut i = 0;
    let mut value_of = |opt: char, value: &str| -> Result<(), String> {
        match opt {
            'l' => user = Some(value.to_string()),
            'p' => port = Some(value.parse().map_err(|_| format!("Bad port '{value}'"))?),
            'o' => {
                let (k, v) = value
                    .split_once(['=', ' '])
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .unwrap_or((value, ""));
                if k.eq_ignore_ascii_case("port") {
                    port = Some(v.parse().map_err(|_| format!("Bad port '{v}'"))?);
                } else if k.eq_ignore_ascii_case("user") {
                    user = Some(v.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    };
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            break;
        };
        for (at, c) in flags.char_indices() {
            if SSH_VALUE_OPTS.contains(c) {
                let rest = &flags[at + c.len_utf8()..];
                if rest.is_empty() {
                    i += 1;
                    let v = args
                        .get(i)
                        .ok_or_else(|| format!("option requires an argument -- {c}"))?;
                    value_of(c, v)?;
                } else {
                    value_of(c, rest)?;
                }
                break;
            }
        }
        i += 1;
    }
    let dest = args
        .get(i)
        .ok_or("usage: ssh [options] destination [command]")?;
    let (u, host) = match dest.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, dest.clone()),
    };
    Ok(SshRequest {
        host,
        user: u.or(user),
        port,
        command: args[i + 1..].join(" "),
    })
}

/// The `ssh` rsync starts: pass the request to the worker through the socket beside this
/// program, relay stdin to it and its frames to stdout/stderr; exit with the command's status.
pub fn shim_main(argv: Vec<std::ffi::OsString>) -> i32 {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let fail = |msg: &str| {
        let _ = writeln!(std::io::stderr(), "ssh: {msg}");
        255
    };
    let req = match parse_ssh_args(&args) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let sock = argv
        .first()
        .map(Path::new)
        .and_then(Path::parent)
        .map(|d| d.join(SOCKET))
        .unwrap_or_default();
    let mut stream = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => {
            return fail(&format!(
                "this ssh is ftl2-runner's bridge for synchronize and cannot reach the worker \
                 ({}: {e})",
                sock.display()
            ));
        }
    };
    let header = json!({
        "host": req.host, "user": req.user, "port": req.port, "command": req.command,
    });
    if stream.write_all(format!("{header}\n").as_bytes()).is_err() {
        return fail("the worker closed the bridge");
    }
    if let Ok(mut to_worker) = stream.try_clone() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_worker);
            let _ = to_worker.shutdown(std::net::Shutdown::Write);
        });
    }
    linger_when_killed();
    // rsync leaves its ssh's stdout non-blocking (unless --blocking-io); OpenSSH copes with
    // EAGAIN, a plain write does not: make both ends blocking, as ours are used.
    for fd in [0, 1] {
        // SAFETY: fcntl on our own standard descriptors.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    let mut head = [0u8; 5];
    // rsync may stop reading once it has its answer; what the host still says on stderr and
    // its exit status must get through all the same.
    let mut stdout_open = true;
    loop {
        if stream.read_exact(&mut head).is_err() {
            return fail("the worker closed the bridge");
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len];
        if stream.read_exact(&mut data).is_err() {
            return fail("the worker closed the bridge");
        }
        match head[0] {
            b'o' if stdout_open => {
                let mut out = std::io::stdout().lock();
                stdout_open = out.write_all(&data).and_then(|()| out.flush()).is_ok();
            }
            b'o' => {}
            b'e' => {
                let _ = std::io::stderr().write_all(&data);
            }
            b'x' => {
                return String::from_utf8_lossy(&data).trim().parse().unwrap_or(255);
            }
            _ => return fail("the worker sent a malformed frame"),
        }
    }
}

/// rsync signals its ssh (SIGUSR1) as soon as it reads the host's error through the protocol,
/// while the host's own words about it may still be on their way to stderr (OpenSSH, reading
/// both from one socket, has them already). So a signal here leaves a second for the rest and
/// the exit status to arrive, and ends the shim then (SIGALRM's default action) if they do not.
fn linger_when_killed() {
    extern "C" fn linger(_: libc::c_int) {
        // SAFETY: alarm is async-signal-safe.
        unsafe {
            libc::alarm(1);
        }
    }
    for sig in [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
    ] {
        // SAFETY: the handler only calls an async-signal-safe function.
        unsafe {
            libc::signal(sig, linger as *const () as libc::sighandler_t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    /// What the worker answers a shim that sends `header`: (stdout, stderr, exit status).
    async fn ask(bridge: &Bridge, header: Value) -> (String, String, i32) {
        let mut s = tokio::net::UnixStream::connect(bridge.dir.join(SOCKET))
            .await
            .unwrap();
        s.write_all(format!("{header}\n").as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let mut head = [0u8; 5];
            s.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut data = vec![0u8; len];
            s.read_exact(&mut data).await.unwrap();
            match head[0] {
                b'o' => out.extend(data),
                b'e' => err.extend(data),
                _ => {
                    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
                    return (text(out), text(err), text(data).parse().unwrap());
                }
            }
        }
    }

    #[tokio::test]
    async fn only_the_registered_hosts_rsync_server_is_run() {
        let access = HostAccess {
            name: "h1".into(),
            connection: "local".into(),
            address: "h1".into(),
            port: 22,
            user: "u".into(),
            key: None,
            password: None,
            become_: None,
            timeout: std::time::Duration::from_secs(5),
            host_key_checking: false,
            known_hosts: None,
            python: None,
            jump: None,
        };
        let bridge = Bridge::start(&[], access.clone()).unwrap();
        let dir = bridge.dir.clone();
        assert!(dir.join("ssh").is_symlink());
        let conn = Connection::Local(Arc::new(LocalConnection {
            name: "h1".into(),
            env: Vec::new(),
            access,
        }));
        let route = bridge.route("10.0.0.1", Some(2222), Some("u"), "echo", &conn);
        let ask_for = |host: &str, command: &str| json!({"host": host, "user": "u", "port": 2222, "command": command});
        // The registered target, its program: run (here on the local connection).
        let (out, _, rc) = ask(&bridge, ask_for("10.0.0.1", "echo --server hi")).await;
        assert_eq!((out.as_str(), rc), ("--server hi\n", 0));
        // Another program on that host, or another host: refused as ssh refuses, with why.
        let (out, err, rc) = ask(&bridge, ask_for("10.0.0.1", "id")).await;
        assert_eq!((out.as_str(), rc), ("", 255));
        assert!(
            err.contains("only `echo --server ...` is run on u@10.0.0.1:2222"),
            "{err}"
        );
        let (_, err, rc) = ask(&bridge, ask_for("10.0.0.2", "echo --server hi")).await;
        assert_eq!(rc, 255);
        assert!(
            err.contains("not the host of a synchronize task in progress"),
            "{err}"
        );
        // Once the call ends, its route is gone; with the job, the directory.
        drop(route);
        let (_, err, _) = ask(&bridge, ask_for("10.0.0.1", "echo --server hi")).await;
        assert!(err.contains("not the host of a synchronize task"), "{err}");
        drop(bridge);
        assert!(!dir.exists());
    }

    #[test]
    fn ssh_command_lines_as_rsync_gives_them() {
        let r = parse_ssh_args(&words(
            "-S none -o Port=2201 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -l deploy 127.0.0.1 rsync --server -logDtprze.iLsfxCIvu --delay-updates . /tmp/d",
        ))
        .unwrap();
        assert_eq!(
            r,
            SshRequest {
                host: "127.0.0.1".into(),
                user: Some("deploy".into()),
                port: Some(2201),
                command: "rsync --server -logDtprze.iLsfxCIvu --delay-updates . /tmp/d".into(),
            }
        );
        let r =
            parse_ssh_args(&words("-p2202 -Tx bob@web1 sudo -u root rsync --server .")).unwrap();
        assert_eq!((r.user.as_deref(), r.port), (Some("bob"), Some(2202)));
        assert_eq!(r.host, "web1");
        assert_eq!(r.command, "sudo -u root rsync --server .");
        assert!(parse_ssh_args(&words("-o Port=x h rsync")).is_err());
        assert!(parse_ssh_args(&words("-S")).is_err());
    }
}
