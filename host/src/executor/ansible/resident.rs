//! The resident module runner (`resident.py`): one long-lived Python per host, become user and
//! interpreter, which runs each AnsiballZ payload in a forked child, exactly as `python` reading
//! the payload on stdin would, but without a new interpreter and with ansible-core's
//! `module_utils` already imported. Where it cannot start (no fork, Python 2, su/doas with a
//! password) calls fall back to plain pipelining; `FTL2_RESIDENT=0` turns it off.

use crate::executor::connection::{CommandOutput, Connection, Stream, Unreachable};
use crate::executor::login::Become;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Mutex as AsyncMutex;

/// The runner's source, sent on the interpreter's stdin at start.
const RESIDENT_PY: &str = include_str!("resident.py");

/// Longest the runner may take to start (become, interpreter start).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the first line of a started runner begins with.
const READY: &[u8] = b"FTL2-RESIDENT 1 ";

/// One host's runner, or why it is not used.
#[derive(Default)]
enum Slot {
    /// Not tried yet.
    #[default]
    Untried,
    /// Running (on the connection's session of this generation), ready for the next payload.
    Up(Box<Stream>, u64),
    /// Could not start, or was lost: plain pipelining from now on.
    Off,
}

/// The job's runners, by host, become identity and interpreter command.
#[derive(Default)]
pub(super) struct Residents {
    slots: Mutex<HashMap<String, Arc<AsyncMutex<Slot>>>>,
}

/// Whether runners are used at all (`FTL2_RESIDENT=0` turns them off).
fn enabled() -> bool {
    !matches!(
        std::env::var("FTL2_RESIDENT").as_deref(),
        Ok("0") | Ok("off") | Ok("no") | Ok("false")
    )
}

impl Residents {
    /// Run `payload` with `command` (the interpreter) on the host as Ansible's pipelining does:
    /// through the host's runner when it has one free, else as a new process.
    pub(super) async fn run(
        &self,
        conn: &Connection,
        host: &str,
        via: Option<&Become>,
        command: &str,
        payload: &[u8],
    ) -> Result<CommandOutput, Unreachable> {
        let pipelined = || Box::pin(conn.exec_as(command, Some(payload), via, None));
        if !enabled() {
            return pipelined().await;
        }
        let identity = via
            .map(|b| {
                format!(
                    "{}\0{}\0{}",
                    b.method,
                    b.user,
                    b.flags.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_default();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = format!("{host}\0{identity}\0{command}");
            Arc::clone(slots.entry(key).or_default())
        };
        // A second call on the same host at the same time (asyncio.gather) does not wait.
        let Ok(mut slot) = slot.try_lock() else {
            return pipelined().await;
        };
        // The connection was closed and reopened since (the job's connection budget): the
        // runner went with the old session; start another.
        if matches!(*slot, Slot::Up(_, generation) if generation != conn.generation()) {
            *slot = Slot::Untried;
        }
        if matches!(*slot, Slot::Untried) {
            // Boxed: only the first call on a host starts a runner (issue 13: memory per host).
            *slot = match Box::pin(start(conn, via, command)).await? {
                Ok(stream) => Slot::Up(Box::new(stream), conn.generation()),
                Err(why) => {
                    crate::debugln!("{host}: no resident module runner ({why}); pipelining");
                    Slot::Off
                }
            };
        }
        // Taken out while in use: a call abandoned half way (a cancel) leaves the slot Off and
        // drops the runner, whose state is then unknown.
        let Slot::Up(mut stream, generation) = std::mem::replace(&mut *slot, Slot::Off) else {
            return pipelined().await;
        };
        match exchange(&mut stream, payload).await {
            Ok(out) => {
                *slot = Slot::Up(stream, generation);
                Ok(out)
            }
            // The module may have run: never run it twice. Report, and pipeline from now on.
            Err(e) => Err(Unreachable(format!(
                "lost the resident module runner while running a module: {e}"
            ))),
        }
    }
}

/// Start a runner: the interpreter reads the runner's source from stdin, then says it is ready.
async fn start(
    conn: &Connection,
    via: Option<&Become>,
    command: &str,
) -> Result<Result<Stream, String>, Unreachable> {
    let cmdline = format!(
        "{command} -c {}",
        crate::executor::modules::quote(&format!(
            "import sys;exec(sys.stdin.buffer.read({}))",
            RESIDENT_PY.len()
        ))
    );
    let started = async {
        let mut stream = match conn.open_stream(&cmdline, via).await? {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        };
        stream.write(RESIDENT_PY.as_bytes()).await;
        Ok(match stream.read_line().await {
            Ok(line) if line.starts_with(READY) => Ok(stream),
            Ok(line) => Err(format!(
                "it said {:?} instead of being ready",
                String::from_utf8_lossy(&line)
            )),
            Err(e) => Err(e),
        })
    };
    match tokio::time::timeout(START_TIMEOUT, started).await {
        Ok(r) => r,
        Err(_) => Ok(Err(format!(
            "it did not start within {} s",
            START_TIMEOUT.as_secs()
        ))),
    }
}

/// One payload through a running runner: its exit code, stdout and stderr.
async fn exchange(stream: &mut Stream, payload: &[u8]) -> Result<CommandOutput, String> {
    let mut request = format!("RUN {}\n", payload.len()).into_bytes();
    request.extend_from_slice(payload);
    stream.write(&request).await;
    let header = stream.read_line().await?;
    let header = String::from_utf8_lossy(&header);
    let nums: Vec<i64> = header
        .strip_prefix("DONE ")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [rc, olen, elen] = nums[..] else {
        return Err(format!("garbled reply: {header:?}"));
    };
    let stdout = stream.read_exact(olen.max(0) as usize).await?;
    let stderr = stream.read_exact(elen.max(0) as usize).await?;
    Ok(CommandOutput {
        rc: rc as i32,
        stdout,
        stderr,
    })
}
