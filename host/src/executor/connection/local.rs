//! The `local` connection: commands run as processes on the controller (the EE) itself, in a
//! pseudo-terminal when su/doas must be given a password.

use super::{Running, Unreachable};
use crate::executor::login::HostAccess;
use std::process::Stdio;

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
    /// `/bin/sh -c cmdline` with the job's environment, killed if the caller gives up on it.
    fn shell(&self, cmdline: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(cmdline)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true);
        cmd
    }

    /// Run `argv` as a process of its own, without a shell (as Ansible's command module runs
    /// it): None when it cannot start, so the caller goes through the shell, which words that
    /// failure as it always has (`not found`, rc 127).
    pub(super) async fn run_argv(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Option<super::CommandOutput> {
        use tokio::io::AsyncWriteExt;
        let (program, args) = argv.split_first()?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that does not read its input closes the pipe: not an error.
            let _ = pipe.write_all(data).await;
        }
        let out = child.wait_with_output().await.ok()?;
        Some(super::CommandOutput {
            rc: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    pub(super) fn start(&self, cmdline: &str) -> Result<Running, Unreachable> {
        let child = self
            .shell(cmdline)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
    pub(super) fn start_in_pty(&self, cmdline: &str) -> Result<Running, Unreachable> {
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
        let mut cmd = self.shell(cmdline);
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
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
