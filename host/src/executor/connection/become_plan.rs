//! How a command runs through become (sudo/su/doas): the command line to start, the marker that
//! says become succeeded, and the prompt to answer with the password.

use crate::executor::login::Become;

/// The command to start and how to recognise become's prompt and success.
pub(super) struct Plan {
    pub(super) command: String,
    pub(super) marker: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) password: Option<String>,
    pub(super) method: String,
    /// su and doas read passwords from a terminal only: run them in a PTY; the command's stdin
    /// then travels through it as base64 lines (a PTY would mangle raw bytes).
    pub(super) pty: bool,
    /// The terminal turns `\n` into `\r\n`, as the terminal of Ansible's `ssh -tt` does.
    pub(super) crlf: bool,
}

/// Whether sudo refused because its sudoers want a terminal (`Defaults requiretty`).
pub(super) fn wants_terminal(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains("you must have a tty to run sudo")
}

/// What to type into the terminal after become succeeded, for the command's stdin `data`:
/// base64 in short lines (far below the terminal's line limit), then ^D, which ends
/// `base64 -d`'s input as end-of-file.
pub(super) fn pty_feed(data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(enc.len() + enc.len() / 76 + 4);
    for line in enc.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(0x04);
    out
}

impl Plan {
    pub(super) fn new(cmdline: &str, via: Option<&Become>, stdin: Option<&[u8]>) -> Plan {
        Plan::build(cmdline, via, stdin, false)
    }

    /// The same through a terminal, for a sudo configured with `requiretty`.
    pub(super) fn in_terminal(cmdline: &str, via: Option<&Become>, stdin: Option<&[u8]>) -> Plan {
        Plan::build(cmdline, via, stdin, true)
    }

    /// In a terminal as Ansible's `ssh -tt` gives one (`\r\n` line ends), for commands whose
    /// output users compare with Ansible's (the `script` action).
    pub(super) fn like_ssh_tt(cmdline: &str, via: Option<&Become>) -> Plan {
        Plan {
            crlf: true,
            ..Plan::build(cmdline, via, None, true)
        }
    }

    fn build(cmdline: &str, via: Option<&Become>, stdin: Option<&[u8]>, terminal: bool) -> Plan {
        let Some(b) = via else {
            return Plan {
                command: cmdline.to_string(),
                marker: None,
                prompt: None,
                password: None,
                method: String::new(),
                pty: terminal,
                crlf: false,
            };
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let marker = format!("BECOME-SUCCESS-{token}");
        let prompt = format!("[ftl2-become-password-{token}]:");
        let pty = terminal || (matches!(b.method.as_str(), "su" | "doas") && b.password.is_some());
        let inner = match (pty, stdin) {
            // Through a terminal, input is read line by line: the data comes after the marker
            // as base64 lines ending with ^D (see `pty_feed`), into a file the command reads.
            // Never in the command line: payloads are over Linux's 128 KiB argument limit.
            (true, Some(_)) => format!(
                "echo {marker}; t=$(mktemp) || exit 1; base64 -d > \"$t\" || exit 1; \
                 /bin/sh -c {} < \"$t\"; rc=$?; rm -f \"$t\"; exit $rc",
                crate::executor::modules::quote(cmdline)
            ),
            (true, None) => format!(
                "echo {marker}; exec /bin/sh -c {} </dev/null",
                crate::executor::modules::quote(cmdline)
            ),
            _ => format!(
                "echo {marker}; exec /bin/sh -c {}",
                crate::executor::modules::quote(cmdline)
            ),
        };
        let user = crate::executor::modules::quote(&b.user);
        let flags = b.flags.clone().unwrap_or_default();
        let command = match b.method.as_str() {
            "su" => format!(
                "su {flags} {user} -c {}",
                crate::executor::modules::quote(&inner)
            ),
            "doas" => format!(
                "doas {flags} -u {user} /bin/sh -c {}",
                crate::executor::modules::quote(&inner)
            ),
            _ => format!(
                "sudo {} -S -p {} -u {user} /bin/sh -c {}",
                if flags.is_empty() {
                    "-H".to_string()
                } else {
                    flags
                },
                crate::executor::modules::quote(&prompt),
                crate::executor::modules::quote(&inner)
            ),
        };
        Plan {
            command,
            marker: Some(marker),
            prompt: Some(if b.is_sudo() {
                prompt
            } else {
                "assword".into()
            }),
            password: b.password.clone(),
            pty,
            crlf: false,
            method: if b.method.is_empty() {
                "sudo".into()
            } else {
                b.method.clone()
            },
        }
    }
}
