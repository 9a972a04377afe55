//! Jobs that are not ours, handed to the execution environment's original ansible-runner.
//!
//! AWX sends every job type to the same `ansible-runner worker`: inventory syncs (a raw
//! `ansible-inventory` command), project updates, playbook runs, ad hoc commands. We stand in for
//! the last two; the others need real Ansible (inventory plugins, SCM modules). When the image
//! keeps the original runner (the Dockerfile renames it to `ansible-runner.orig`), such a job is
//! streamed to it unchanged and its stream is forwarded line by line, so one EE serves every job.
//! Without one, the worker refuses the job with an explanation instead of faking success.

use crate::logln;
use crate::writer::StreamWriter;
use anyhow::{Context, Result, anyhow};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// The name the Dockerfile gives the image's original ansible-runner.
const ORIGINAL_NAME: &str = "ansible-runner.orig";

/// The original ansible-runner to hand foreign jobs to: `$FTL2_FALLBACK_RUNNER` (empty or
/// `none` turns delegation off), else `ansible-runner.orig` on PATH.
pub fn original_runner() -> Option<PathBuf> {
    match std::env::var("FTL2_FALLBACK_RUNNER") {
        Ok(v) if v.is_empty() || v == "none" => None,
        Ok(v) => Some(PathBuf::from(v)),
        Err(_) => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(ORIGINAL_NAME))
                .find(|p| is_executable(p))
        }),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run the job in `pdd` (as received, with `kwargs`) through `runner worker` and forward its
/// stream to `writer`. The original runner works in the same private data dir, because AWX
/// writes absolute paths into some jobs (`--output /runner/artifacts/<id>/output.json`).
/// Returns the exit code; an error means the stream is still open and needs an error status.
pub async fn delegate(
    runner: &Path,
    kwargs: &Map<String, Value>,
    pdd: &Path,
    writer: &StreamWriter,
    mut cancel: watch::Receiver<bool>,
) -> Result<i32> {
    let zip = crate::artifacts::zip_dir(pdd, false)?;
    // Whatever the original runner leaves behind (its ansible-playbook runs in a session of its
    // own and may be orphaned) is reparented to us, not to init, so a cancel can end it.
    crate::processes::adopt_orphans();
    let mut child = tokio::process::Command::new(runner)
        .arg("worker")
        .arg(format!("--private-data-dir={}", pdd.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the original runner {}", runner.display()))?;
    logln!("job handed to {} (pid {:?})", runner.display(), child.id());

    let mut stdin = child
        .stdin
        .take()
        .context("no stdin for the original runner")?;
    let mut head = crate::pyjson::to_vec(&json!({"kwargs": kwargs}));
    head.push(b'\n');
    let size = zip.as_file().metadata()?.len();
    head.extend(crate::pyjson::to_vec(&json!({"zipfile": size})));
    head.push(b'\n');
    let mut zip_file = zip.reopen()?;
    let feeder = tokio::spawn(async move {
        stdin.write_all(&head).await?;
        // Base64 in chunks of a multiple of 3 bytes concatenates to the encoding of the whole.
        let mut buf = vec![0u8; 3 * 64 * 1024];
        loop {
            let n = read_full(&mut zip_file, &mut buf)?;
            if n == 0 {
                break;
            }
            let text = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
            stdin.write_all(text.as_bytes()).await?;
        }
        stdin.write_all(b"{\"eof\": true}\n").await?;
        stdin.shutdown().await
    });

    let stdout = child
        .stdout
        .take()
        .context("no stdout for the original runner")?;
    let mut lines = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut ended = false;
    let mut canceled = false;
    // The original runner's own children (ansible-playbook under pexpect, in a session of its
    // own) can outlive a canceled runner: their process groups, taken when we cancel.
    let mut family_groups: Vec<i32> = Vec::new();
    loop {
        line.clear();
        tokio::select! {
            read = lines.read_until(b'\n', &mut line) => {
                if read.context("reading the original runner's stream")? == 0 {
                    break;
                }
                if !line.ends_with(b"\n") {
                    line.push(b'\n'); // cut off mid-line: keep our error status on its own line
                }
                if writer.passthrough_line(&line) {
                    ended = true;
                }
            }
            _ = cancel.wait_for(|c| *c), if !canceled => {
                // The original runner answers SIGTERM with its own `canceled` status and eof.
                canceled = true;
                if let Some(pid) = child.id() {
                    family_groups = crate::processes::groups_below(pid);
                    logln!("canceling the original runner (pid {pid}); its process groups: {family_groups:?}");
                    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    }
    drop(feeder);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    if canceled {
        // Orphans of the runner are now our children (subreaper): their groups too.
        family_groups.extend(crate::processes::groups_below(std::process::id()));
        family_groups.sort_unstable();
        family_groups.dedup();
        crate::processes::end_groups(&family_groups).await;
    }
    let status = status
        .map_err(|_| anyhow!("the original runner did not exit after closing its stream"))?
        .context("waiting for the original runner")?;
    if !ended {
        return Err(anyhow!(
            "the original runner {} ended ({status}) without finishing its stream",
            runner.display()
        ));
    }
    Ok(status.code().unwrap_or(crate::outcome::RC_CANCELED))
}

/// Fill `buf` as far as the reader allows (short only at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
