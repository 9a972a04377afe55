//! How commands reach a host. Modules are written against [`Connection`], which runs a shell
//! command line on the target and returns its output; `local` spawns it on the EE itself.
//! (SSH joins as another variant in the execution-engine work.)

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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

/// A way to run commands on one host.
#[derive(Debug, Clone)]
pub enum Connection {
    /// Processes spawned on the controller (the EE) itself.
    Local(LocalConnection),
}

impl Connection {
    /// Run `cmdline` with `/bin/sh -c` on the target, feeding `stdin` if given.
    pub async fn exec(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, Unreachable> {
        match self {
            Connection::Local(l) => l.exec(cmdline, stdin, timeout).await,
        }
    }

    /// The address shown as `remote_addr`.
    pub fn remote_addr(&self) -> String {
        match self {
            Connection::Local(l) => l.name.clone(),
        }
    }
}

/// The `local` connection.
#[derive(Debug, Clone)]
pub struct LocalConnection {
    /// Inventory name of the host.
    pub name: String,
    /// Extra environment for commands (the job's envvars).
    pub env: Vec<(String, String)>,
}

impl LocalConnection {
    async fn exec(
        &self,
        cmdline: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, Unreachable> {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(cmdline)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| Unreachable(format!("cannot start /bin/sh on the controller: {e}")))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let data = data.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
                let _ = pipe.shutdown().await;
            });
        }
        let wait = child.wait_with_output();
        let out = match timeout {
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(r) => r,
                Err(_) => {
                    return Ok(CommandOutput {
                        rc: -1,
                        stdout: Vec::new(),
                        stderr: format!("command timed out after {} s", t.as_secs()).into_bytes(),
                    });
                }
            },
            None => wait.await,
        }
        .map_err(|e| Unreachable(format!("waiting for a local command failed: {e}")))?;
        Ok(CommandOutput {
            rc: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
