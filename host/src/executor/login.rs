//! How to log in to a host and become another user: host vars merged with the AWX machine
//! credential, with Ansible's precedence (host vars win over the credential and `-u`; extra vars
//! win over both).
//!
//! The credential's secrets (SSH key, SSH/become/key-unlock passwords) arrive in the job's
//! kwargs; prompt passwords count only when the matching `--ask-*` flag is on the command line,
//! as ansible-playbook would have asked for them.

use crate::secret::Secret;
use russh::keys::PrivateKey;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The job-wide login material: the AWX machine credential and the command line's options.
#[derive(Debug, Clone, Default)]
pub struct Credential {
    /// `-u`.
    pub user: Option<String>,
    /// The credential's private key (PEM / OpenSSH text).
    pub ssh_key: Option<Secret<String>>,
    /// Passphrase of that key (the "Enter passphrase for" prompt answer).
    pub key_passphrase: Option<Secret<String>>,
    /// SSH password (only with `--ask-pass`).
    pub ssh_password: Option<Secret<String>>,
    /// `--become`.
    pub become_: bool,
    /// `--become-method`.
    pub become_method: Option<String>,
    /// `--become-user`.
    pub become_user: Option<String>,
    /// Become password (only with `--ask-become-pass`).
    pub become_password: Option<Secret<String>>,
    /// `--private-key`.
    pub private_key_file: Option<String>,
    /// `-T/--timeout`.
    pub timeout: Option<u32>,
    /// ANSIBLE_HOST_KEY_CHECKING from the job's environment; off unless it says true (AWX sets False).
    pub host_key_checking: bool,
}

/// Switching user on the target for a command.
#[derive(Debug, Clone)]
pub struct Become {
    /// `sudo` (default), `su` or `doas`.
    pub method: String,
    /// Target user (default root).
    pub user: String,
    /// Password for the prompt, if any.
    pub password: Option<String>,
    /// `ansible_become_flags`.
    pub flags: Option<String>,
}

impl Become {
    /// Whether this is sudo (the default when no method is given).
    pub fn is_sudo(&self) -> bool {
        self.method.is_empty() || self.method == "sudo"
    }
}

/// Everything needed to reach one host.
#[derive(Debug, Clone)]
pub struct HostAccess {
    /// Inventory name.
    pub name: String,
    /// `local` or `ssh`.
    pub connection: String,
    /// `ansible_host` (default: the name).
    pub address: String,
    /// `ansible_port` (default 22).
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key, decoded.
    pub key: Option<Arc<PrivateKey>>,
    /// Login password.
    pub password: Option<Secret<String>>,
    /// Become for every command, when the host or job asks for it.
    pub become_: Option<Become>,
    /// Connect timeout.
    pub timeout: Duration,
    /// Verify host keys against known_hosts.
    pub host_key_checking: bool,
    /// known_hosts file (default ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// `ansible_python_interpreter`.
    pub python: Option<String>,
    /// A jump host from `-o ProxyJump=`/`-J` or `ProxyCommand="ssh -W %h:%p ..."` in
    /// `ansible_ssh_common_args`/`ansible_ssh_extra_args`.
    pub jump: Option<JumpHost>,
}

/// An SSH jump host (bastion).
#[derive(Debug, Clone, PartialEq)]
pub struct JumpHost {
    /// Login user (default: the target's).
    pub user: Option<String>,
    /// Address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Find a jump host in ssh arguments, the ways Ansible users write it.
pub fn jump_from_ssh_args(args: &str) -> Result<Option<JumpHost>, String> {
    let words =
        shlex::split(args).ok_or_else(|| format!("unbalanced quotes in ssh arguments {args:?}"))?;
    let mut spec = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let opt = if w == "-o" {
            i += 1;
            words.get(i).cloned()
        } else {
            w.strip_prefix("-o").map(String::from)
        };
        if let Some(o) = opt {
            let (k, v) = o
                .split_once('=')
                .or_else(|| o.split_once(' '))
                .unwrap_or((o.as_str(), ""));
            match k.to_ascii_lowercase().as_str() {
                "proxyjump" => spec = Some(v.trim().to_string()),
                "proxycommand" => spec = Some(proxy_command_target(v).ok_or_else(|| {
                    format!("ProxyCommand {v:?} is not supported (only `ssh -W %h:%p [-p port] [user@]host`)")
                })?),
                _ => {}
            }
        } else if w == "-J" {
            i += 1;
            spec = words.get(i).cloned();
        }
        i += 1;
    }
    let Some(spec) = spec.filter(|s| !s.is_empty() && s != "none") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Err(format!("more than one jump host ({spec}) is not supported"));
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, spec.as_str()),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| format!("bad jump host port in {spec:?}"))?,
        ),
        None => (rest.to_string(), 22),
    };
    Ok(Some(JumpHost { user, host, port }))
}

/// `ssh -W %h:%p [-q] [-p port] [-l user] [user@]bastion` -> `[user@]bastion[:port]`.
fn proxy_command_target(cmd: &str) -> Option<String> {
    let words = shlex::split(cmd)?;
    if words.first().map(|w| w.rsplit('/').next() == Some("ssh")) != Some(true)
        || !words.iter().any(|w| w == "-W")
    {
        return None;
    }
    let (mut port, mut user, mut host) = (None, None, None);
    let mut i = 1;
    while i < words.len() {
        match words[i].as_str() {
            "-W" | "-i" | "-F" | "-o" => i += 1,
            "-p" => {
                i += 1;
                port = words.get(i).cloned();
            }
            "-l" => {
                i += 1;
                user = words.get(i).cloned();
            }
            w if w.starts_with('-') => {}
            w => host = Some(w.to_string()),
        }
        i += 1;
    }
    let mut spec = host?;
    if let Some(u) = user
        && !spec.contains('@')
    {
        spec = format!("{u}@{spec}");
    }
    if let Some(p) = port {
        spec = format!("{spec}:{p}");
    }
    Some(spec)
}

/// Decoded keys, by source, so an encrypted key is decrypted once per job, not once per host.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<String, Result<Arc<PrivateKey>, String>>>);

fn var_str(vars: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match vars.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn var_bool(vars: &Map<String, Value>, key: &str) -> Option<bool> {
    vars.get(key).and_then(crate::boolean::ansible_bool)
}

/// Work out how to reach `name` from its variables, the job's extra vars and the credential.
pub fn resolve(
    name: &str,
    host_vars: &Map<String, Value>,
    extravars: &Map<String, Value>,
    cred: &Credential,
    keys: &KeyCache,
) -> Result<HostAccess, String> {
    // Extra vars are the highest precedence in Ansible, connection vars included.
    let mut vars = host_vars.clone();
    for (k, v) in extravars {
        if k.starts_with("ansible_") {
            vars.insert(k.clone(), v.clone());
        }
    }
    let implicit_local =
        (name == "localhost" || name == "127.0.0.1") && !vars.contains_key("ansible_host");
    let connection = var_str(&vars, &["ansible_connection"]).unwrap_or_else(|| {
        if implicit_local {
            "local".into()
        } else {
            "ssh".into()
        }
    });
    let connection = match connection.as_str() {
        "local" if local_denied() => {
            return Err(format!(
                "host {name} uses the local connection (the controller itself), which this execution environment does not allow (FTL2_LOCAL_CONNECTION=deny)"
            ));
        }
        "local" => "local".to_string(),
        "ssh" | "paramiko" | "smart" | "ansible.builtin.ssh" | "ansible.netcommon.libssh" => {
            "ssh".to_string()
        }
        other => {
            return Err(format!(
                "connection type '{other}' is not supported by ftl2-runner (local and ssh are)"
            ));
        }
    };
    let address =
        var_str(&vars, &["ansible_host", "ansible_ssh_host"]).unwrap_or_else(|| name.to_string());
    let port = match var_str(&vars, &["ansible_port", "ansible_ssh_port"]) {
        Some(p) => p
            .parse()
            .map_err(|_| format!("ansible_port {p:?} is not a port number"))?,
        None => 22,
    };
    let user = var_str(&vars, &["ansible_user", "ansible_ssh_user"])
        .or_else(|| cred.user.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into());
    let password = var_str(
        &vars,
        &[
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_ssh_password",
        ],
    )
    .map(Secret::new)
    .or_else(|| cred.ssh_password.clone());
    let passphrase = var_str(&vars, &["ansible_ssh_private_key_passphrase"])
        .map(Secret::new)
        .or_else(|| cred.key_passphrase.clone());
    let key = if connection == "ssh" {
        let file = var_str(
            &vars,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        )
        .or_else(|| cred.private_key_file.clone());
        match (file, &cred.ssh_key) {
            (Some(path), _) => Some(load_key(
                keys,
                &format!("file:{path}"),
                passphrase.as_ref(),
                || {
                    std::fs::read_to_string(expand_home(&path))
                        .map_err(|e| format!("cannot read the SSH key {path}: {e}"))
                },
            )?),
            (None, Some(pem)) => Some(load_key(keys, "credential", passphrase.as_ref(), || {
                Ok(pem.expose().clone())
            })?),
            (None, None) => None,
        }
    } else {
        None
    };
    let become_on = var_bool(&vars, "ansible_become").unwrap_or(cred.become_);
    let become_ = become_on.then(|| Become {
        method: var_str(&vars, &["ansible_become_method"])
            .or_else(|| cred.become_method.clone())
            .unwrap_or_else(|| "sudo".into()),
        user: var_str(&vars, &["ansible_become_user"])
            .or_else(|| cred.become_user.clone())
            .unwrap_or_else(|| "root".into()),
        password: var_str(&vars, &["ansible_become_password", "ansible_become_pass"])
            .or_else(|| cred.become_password.as_ref().map(|s| s.expose().clone())),
        flags: var_str(&vars, &["ansible_become_flags"]),
    });
    let timeout = var_str(&vars, &["ansible_timeout", "ansible_ssh_timeout"])
        .and_then(|t| t.parse().ok())
        .or(cred.timeout)
        .unwrap_or(10);
    let host_key_checking = var_bool(&vars, "ansible_host_key_checking")
        .or_else(|| var_bool(&vars, "ansible_ssh_host_key_checking"))
        .unwrap_or(cred.host_key_checking)
        && !var_str(
            &vars,
            &["ansible_ssh_common_args", "ansible_ssh_extra_args"],
        )
        .is_some_and(|a| a.contains("StrictHostKeyChecking=no"));
    let jump = if connection == "ssh" {
        let args = [
            var_str(&vars, &["ansible_ssh_common_args"]),
            var_str(&vars, &["ansible_ssh_extra_args"]),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        jump_from_ssh_args(&args)?
    } else {
        None
    };
    Ok(HostAccess {
        name: name.to_string(),
        connection,
        address,
        port,
        user,
        key,
        password,
        become_,
        timeout: Duration::from_secs(timeout as u64),
        host_key_checking,
        known_hosts: var_str(&vars, &["ansible_ssh_known_hosts_file"])
            .map(|p| PathBuf::from(expand_home(&p))),
        python: var_str(&vars, &["ansible_python_interpreter"]),
        jump,
    })
}

/// Whether the EE's admin forbids running modules on the controller itself (FTL2_LOCAL_CONNECTION=deny).
fn local_denied() -> bool {
    std::env::var("FTL2_LOCAL_CONNECTION").is_ok_and(|v| v.eq_ignore_ascii_case("deny"))
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

fn load_key(
    cache: &KeyCache,
    source: &str,
    passphrase: Option<&Secret<String>>,
    read: impl FnOnce() -> Result<String, String>,
) -> Result<Arc<PrivateKey>, String> {
    let mut map = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = map.get(source) {
        return r.clone();
    }
    let r = read().and_then(|pem| {
        super::connection::decode_key(&pem, passphrase.map(|p| p.expose().as_str()))
    });
    map.insert(source.to_string(), r.clone());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::modules::obj;
    use serde_json::json;

    #[test]
    fn host_vars_win_over_the_credential_and_extra_vars_over_both() {
        let cred = Credential {
            user: Some("cred-user".into()),
            become_: true,
            become_user: Some("admin".into()),
            ..Default::default()
        };
        let keys = KeyCache::default();
        let a = resolve("web1", &obj(json!({"ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "hv-user"})), &Map::new(), &cred, &keys).unwrap();
        assert_eq!(
            (a.address.as_str(), a.port, a.user.as_str()),
            ("10.0.0.5", 2222, "hv-user")
        );
        assert_eq!(a.become_.as_ref().unwrap().user, "admin");
        let a = resolve(
            "web1",
            &obj(json!({"ansible_user": "hv-user"})),
            &obj(json!({"ansible_user": "ev-user"})),
            &cred,
            &keys,
        )
        .unwrap();
        assert_eq!(a.user, "ev-user");
        let a = resolve("web1", &Map::new(), &Map::new(), &cred, &keys).unwrap();
        assert_eq!(
            (a.user.as_str(), a.connection.as_str()),
            ("cred-user", "ssh")
        );
        let a = resolve("localhost", &Map::new(), &Map::new(), &cred, &keys).unwrap();
        assert_eq!(a.connection, "local");
        assert!(
            resolve(
                "x",
                &obj(json!({"ansible_connection": "winrm"})),
                &Map::new(),
                &cred,
                &keys
            )
            .is_err()
        );
        let a = resolve(
            "x",
            &obj(json!({"ansible_become": false})),
            &Map::new(),
            &cred,
            &keys,
        )
        .unwrap();
        assert!(a.become_.is_none());
    }

    #[test]
    fn jump_hosts_from_ssh_args() {
        let j = |a: &str| jump_from_ssh_args(a).unwrap();
        let want = |u: Option<&str>, h: &str, p: u16| {
            Some(JumpHost {
                user: u.map(String::from),
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(
            j("-o ProxyJump=ops@bastion:2222"),
            want(Some("ops"), "bastion", 2222)
        );
        assert_eq!(j("-J bastion"), want(None, "bastion", 22));
        assert_eq!(
            j(
                "-o StrictHostKeyChecking=no -o 'ProxyCommand=ssh -W %h:%p -q -p 2200 jump@10.0.0.1'"
            ),
            want(Some("jump"), "10.0.0.1", 2200)
        );
        assert_eq!(j("-o StrictHostKeyChecking=no"), None);
        assert!(jump_from_ssh_args("-o ProxyCommand='nc -x proxy %h %p'").is_err());
        assert!(jump_from_ssh_args("-J a,b").is_err());
    }
}
