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
    /// then travels inside the command line (base64), since a PTY would mangle it.
    pub(super) pty: bool,
}

impl Plan {
    pub(super) fn new(cmdline: &str, via: Option<&Become>, stdin: Option<&[u8]>) -> Plan {
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
                    crate::executor::modules::quote(cmdline)
                )
            }
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
