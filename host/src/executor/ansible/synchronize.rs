//! `ansible.posix.synchronize`, its action plugin ported: the module's arguments computed as
//! the plugin computes them (target `user@host:path`, `dest_port` from the inventory, become as
//! `rsync_path='sudo -u USER rsync'`, paths found in the script's `files/` directory), then the
//! real module run on the controller, where it starts rsync. rsync reaches the host through
//! `rsync_ssh` (our connection to the host), never through an ssh of its own.
//!
//! What the controller side touches is kept to what the script may touch: a pushed source comes
//! from the script's directories (or scratch), a pulled destination goes to scratch, and rsync
//! options that would read or write other controller files, follow links out of the source or
//! run a command of their own are refused, as are options we could not honour (another port
//! or key than the connection's).

use super::{AnsibleModules, Caller, rsync_ssh};
use crate::executor::connection::{Connection, Unreachable};
use crate::executor::login::HostAccess;
use crate::executor::modules::{LocalFiles, ModuleCtx, bool_arg, failed};
use serde_json::{Map, Value, json};

/// ansible-core's `C.LOCALHOST`.
const LOCALHOST: &[&str] = &["127.0.0.1", "localhost", "::1"];
/// The name the controller's module runs under (its own resident runner, whose PATH leads
/// rsync to our `ssh`; never the script's own localhost).
const CONTROLLER: &str = "localhost (synchronize)";
/// The ssh connection plugin's default `ssh_args`, which `use_ssh_args` passes on.
const DEFAULT_SSH_ARGS: &str = "-C -o ControlMaster=auto -o ControlPersist=60s";

/// Which side of the transfer runs on the controller, for vetting rsync options.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Push,
    Pull,
}

/// Long rsync options that only change how files are compared, sent or kept.
const SAFE_LONG: &[&str] = &[
    "verbose",
    "quiet",
    "no-motd",
    "checksum",
    "archive",
    "recursive",
    "relative",
    "implied-dirs",
    "update",
    "inplace",
    "append",
    "append-verify",
    "dirs",
    "mkpath",
    "links",
    "safe-links",
    "munge-links",
    "hard-links",
    "perms",
    "executability",
    "chmod",
    "acls",
    "xattrs",
    "owner",
    "group",
    "devices",
    "specials",
    "times",
    "atimes",
    "open-noatime",
    "crtimes",
    "omit-dir-times",
    "omit-link-times",
    "super",
    "fake-super",
    "sparse",
    "preallocate",
    "dry-run",
    "whole-file",
    "checksum-choice",
    "cc",
    "one-file-system",
    "block-size",
    "existing",
    "ignore-existing",
    "ignore-non-existing",
    "delete",
    "delete-before",
    "delete-during",
    "delete-delay",
    "delete-after",
    "delete-excluded",
    "ignore-missing-args",
    "delete-missing-args",
    "ignore-errors",
    "force",
    "max-delete",
    "max-size",
    "min-size",
    "max-alloc",
    "partial",
    "delay-updates",
    "prune-empty-dirs",
    "numeric-ids",
    "usermap",
    "groupmap",
    "chown",
    "timeout",
    "contimeout",
    "ignore-times",
    "size-only",
    "modify-window",
    "fuzzy",
    "compress",
    "compress-choice",
    "zc",
    "compress-level",
    "zl",
    "skip-compress",
    "exclude",
    "include",
    "from0",
    "protect-args",
    "secluded-args",
    "trust-sender",
    "iconv",
    "ipv4",
    "ipv6",
    "blocking-io",
    "outbuf",
    "stats",
    "8-bit-output",
    "human-readable",
    "progress",
    "itemize-changes",
    "out-format",
    "info",
    "debug",
    "stderr",
    "msgs2stderr",
    "list-only",
    "bwlimit",
    "stop-after",
    "time-limit",
    "stop-at",
    "fsync",
    "rsync-path",
    "remote-option",
    "backup",
    "suffix",
    "cvs-exclude",
];
/// Long options the side receiving files interprets as its own paths or link policy: fine when
/// that is the host, refused when it is the controller (pull).
const RECEIVER_LONG: &[&str] = &[
    "backup-dir",
    "partial-dir",
    "temp-dir",
    "compare-dest",
    "copy-dest",
    "link-dest",
    "keep-dirlinks",
];
/// Long options the sending side interprets: following links, reading devices, deleting the
/// sources. Fine when the host sends (pull), refused when the controller does (push).
const SENDER_LONG: &[&str] = &[
    "copy-links",
    "copy-unsafe-links",
    "copy-dirlinks",
    "copy-devices",
    "remove-source-files",
];
/// Short options that take no value and only change how files are compared, sent or kept.
const SAFE_SHORT: &str = "vqcarRudlHpEAXogDtUNOJSnWxzhPimbIs0468F";
/// Short options that take a value, and whether it is harmless (block size, remote option).
const VALUE_SHORT: &[(char, bool)] = &[
    ('B', true),
    ('M', true),
    ('e', false),
    ('f', false),
    ('T', false),
];

/// Why an rsync option is not passed to rsync on the controller, if it is not.
fn vet_rsync_opt(opt: &str, mode: Mode) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "ftl2-runner does not pass the rsync option '{opt}' to rsync on the controller: {why}"
        ))
    };
    const FILES: &str = "it reads or writes controller files outside the script's directories";
    if let Some(long) = opt.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        let name = name.strip_prefix("no-").unwrap_or(name);
        if SAFE_LONG.contains(&name) {
            return Ok(());
        }
        if name == "filter" {
            let rule = long.split_once('=').map(|(_, r)| r).unwrap_or("");
            return vet_filter_rule(rule).or_else(|()| refuse(FILES));
        }
        if RECEIVER_LONG.contains(&name) {
            return match mode {
                Mode::Push => Ok(()),
                Mode::Pull => refuse(FILES),
            };
        }
        if SENDER_LONG.contains(&name) {
            return match mode {
                Mode::Pull => Ok(()),
                Mode::Push => refuse("it reads files outside the source or deletes the sources"),
            };
        }
        return match name {
            "rsh" => refuse("rsync reaches the host through ftl2-runner's connection"),
            "exclude-from" | "include-from" | "files-from" | "password-file" | "log-file"
            | "log-file-format" | "write-batch" | "only-write-batch" | "read-batch"
            | "early-input" | "config" => refuse(FILES),
            _ => refuse("it is not an option ftl2-runner knows to be safe there"),
        };
    }
    let Some(flags) = opt.strip_prefix('-').filter(|f| !f.is_empty()) else {
        // A word that is not an option is a source rsync would read on the controller.
        return refuse(FILES);
    };
    for c in flags.chars() {
        if let Some((_, harmless)) = VALUE_SHORT.iter().find(|(v, _)| *v == c) {
            return if *harmless {
                Ok(())
            } else if c == 'e' {
                refuse("rsync reaches the host through ftl2-runner's connection")
            } else {
                refuse(FILES)
            };
        }
        match c {
            'L' | 'k' if mode == Mode::Push => {
                return refuse("it follows links out of the source on the controller");
            }
            'K' if mode == Mode::Pull => return refuse(FILES),
            'L' | 'k' | 'K' => {}
            'C' => {}
            c if SAFE_SHORT.contains(c) => {}
            _ => return refuse("it is not an option ftl2-runner knows to be safe there"),
        }
    }
    Ok(())
}

/// Filter rules that only include, exclude, hide, show, protect or risk names; merge rules read
/// files of their own.
fn vet_filter_rule(rule: &str) -> Result<(), ()> {
    let word = rule.split([' ', ',', '_']).next().unwrap_or("");
    let plain = [
        "-", "+", "exclude", "include", "hide", "show", "protect", "risk", "H", "S", "P", "R", "!",
        "clear",
    ];
    if plain.contains(&word)
        || (word.len() > 1 && "-+HSPR".contains(&word[..1]) && !word.contains(['.', ':']))
    {
        Ok(())
    } else {
        Err(())
    }
}

/// `rsync_opts` as the module reads it: a list, or a comma-separated string.
fn rsync_opts(args: &Map<String, Value>) -> Vec<String> {
    match args.get("rsync_opts") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => s.split(',').map(String::from).collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

fn var(vars: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|k| match vars.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The plugin's `_get_absolute_path`: a relative local path is looked for in the script's
/// `files/` directory, else beside the script (a trailing `/` kept, as rsync reads it).
fn absolute(path: &str, local: &LocalFiles) -> String {
    if path.contains(':') || path.starts_with('/') {
        return path.to_string();
    }
    // path_dwim_relative: the first place that exists, else the last looked at.
    let mut candidates = local.needle_candidates("files", path.trim_end_matches('/'));
    let last = candidates.pop().unwrap_or_default();
    let found = candidates.into_iter().find(|c| c.exists()).unwrap_or(last);
    let mut out = crate::unpack::normalize(&found)
        .unwrap_or(found)
        .to_string_lossy()
        .into_owned();
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The plugin's `_format_rsync_rsh_target`.
fn rsh_target(host: &str, path: &str, user: Option<&str>) -> String {
    let prefix = user.map(|u| format!("{u}@")).unwrap_or_default();
    if host.contains(':') {
        format!("[{prefix}{host}]:{path}")
    } else {
        format!("{prefix}{host}:{path}")
    }
}

/// A pulled destination: in the scratch directory when relative, as fetch's.
fn pull_dest(dest: &str, ctx: &ModuleCtx<'_>) -> String {
    if dest.starts_with('/') {
        return dest.to_string();
    }
    let mut out = ctx
        .local
        .write_base()
        .join(dest.trim_end_matches('/'))
        .to_string_lossy()
        .into_owned();
    if dest.ends_with('/') {
        out.push('/');
    }
    out
}

/// What ftl2-runner refuses before anything runs: controller paths outside the script's
/// directories, rsync options that reach further, and what the connection cannot honour.
fn vet(
    a: &Map<String, Value>,
    src: &str,
    dest: &str,
    mode: Mode,
    ctx: &ModuleCtx<'_>,
    vars: &Map<String, Value>,
) -> Result<(), String> {
    let access = ctx.conn.access();
    for (what, p) in [("src", src), ("dest", dest)] {
        if p.contains(':') {
            return Err(format!(
                "synchronize {what}={p:?} names a host or an rsync daemon; ftl2-runner's \
                 synchronize copies between the controller and the task's host only"
            ));
        }
    }
    match mode {
        // rsync opens these paths itself: they are checked to lead nowhere outside, while the
        // script is held still (see the caller), so they stay as checked until rsync is done.
        Mode::Push => {
            ctx.local
                .readable(&absolute(src, ctx.local))?
                .stays_beneath()?;
        }
        Mode::Pull => {
            let d = pull_dest(dest, ctx);
            ctx.local
                .writable(d.trim_end_matches('/'))?
                .stays_beneath()?;
            for l in a
                .get("link_dest")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(l) = l.as_str() {
                    ctx.local.readable(l)?.stays_beneath()?;
                }
            }
        }
    }
    if mode == Mode::Push && bool_arg(a, "copy_links", false) {
        return Err(
            "synchronize copy_links=yes would follow links out of the source on the \
             controller, which ftl2-runner does not allow"
                .into(),
        );
    }
    for opt in rsync_opts(a) {
        vet_rsync_opt(&opt, mode)?;
    }
    if !matches!(ctx.conn, Connection::Ssh(_)) {
        return Ok(());
    }
    if let Some(p) = a.get("dest_port").filter(|p| !p.is_null()) {
        let given = match p {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if given.parse::<u16>() != Ok(access.port) {
            return Err(format!(
                "synchronize dest_port={given} differs from the port ftl2-runner reaches {} \
                 on ({}); rsync goes through that connection",
                ctx.host, access.port
            ));
        }
    }
    if let Some(k) = a.get("private_key").and_then(Value::as_str) {
        let own = var(
            vars,
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
        );
        if own.as_deref() != Some(k) {
            return Err(format!(
                "synchronize private_key={k:?} is not the key ftl2-runner reaches {} with; \
                 rsync goes through that connection",
                ctx.host
            ));
        }
    }
    if bool_arg(a, "verify_host", false) && !access.host_key_checking {
        return Err(format!(
            "synchronize verify_host=yes asks for {}'s host key to be verified, but this \
             job does not check host keys (host_key_checking is off); rsync goes through \
             that connection",
            ctx.host
        ));
    }
    Ok(())
}

impl AnsibleModules {
    /// The synchronize action on the context's host.
    pub(super) async fn synchronize_action(
        &self,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        let vars = (ctx.vars)();
        let mut a = args.clone();
        let use_ssh_args = a
            .remove("use_ssh_args")
            .as_ref()
            .and_then(crate::boolean::ansible_bool)
            .unwrap_or(false);
        let access = ctx.conn.access();
        let remote = matches!(ctx.conn, Connection::Ssh(_));
        if use_ssh_args && remote {
            let ssh_args = var(&vars, &["ansible_ssh_args"]).unwrap_or(DEFAULT_SSH_ARGS.into());
            let parts = [
                Some(ssh_args),
                var(&vars, &["ansible_ssh_common_args"]),
                var(&vars, &["ansible_ssh_extra_args"]),
            ];
            let joined: Vec<String> = parts.into_iter().flatten().collect();
            a.insert("_ssh_args".into(), json!(joined.join(" ")));
        }
        let local_rsync = var(&vars, &["ansible_rsync_path"]).unwrap_or("rsync".into());
        if local_rsync != "rsync" {
            return Ok(failed(format!(
                "ftl2-runner runs the controller's own rsync for synchronize, not \
                 ansible_rsync_path={local_rsync:?}"
            )));
        }
        a.insert("_local_rsync_path".into(), json!(local_rsync));
        // The task's host as rsync names it (the plugin's dest_host, or its src_host when
        // pulling); the controller's side is a local path.
        let host = var(&vars, &["ansible_host"]).unwrap_or_else(|| ctx.host.to_string());
        let inv_port = var(&vars, &["ansible_port"]);
        if a.get("dest_port").is_none_or(Value::is_null)
            && let Some(p) = &inv_port
        {
            a.insert(
                "dest_port".into(),
                json!(p.parse::<u64>().map(Value::from).unwrap_or(json!(p))),
            );
        }
        let mode = match a.get("mode").and_then(Value::as_str) {
            Some("pull") => Mode::Pull,
            _ => Mode::Push,
        };
        let (Some(src), Some(dest)) = (
            a.get("src").and_then(Value::as_str).map(String::from),
            a.get("dest").and_then(Value::as_str).map(String::from),
        ) else {
            return Ok(failed(
                "synchronize requires both src and dest parameters are set",
            ));
        };
        // rsync opens the controller's paths itself, so they cannot be opened beneath the
        // script's directories: the script is held still (no wasm runs) from their check until
        // the module has finished, so it cannot swap a directory for a link in between.
        let _script_held = ctx.local.gate.hold().await;
        // What only ftl2-runner refuses: the controller's files and what it cannot honour.
        if let Err(msg) = vet(&a, &src, &dest, mode, ctx, &vars) {
            return Ok(failed(msg));
        }
        let (mut src, mut dest) = (src, dest);
        let mut user = None;
        if remote {
            if bool_arg(&a, "set_remote_user", true) {
                user =
                    var(&vars, &["ansible_user", "ansible_ssh_user"]).or(Some(access.user.clone()));
            }
            if a.get("private_key").is_none_or(Value::is_null)
                && let Some(k) = var(
                    &vars,
                    &["ansible_ssh_private_key_file", "ansible_private_key_file"],
                )
            {
                a.insert("private_key".into(), json!(k));
            }
            // _process_remote: the host is this machine's own sshd (no port of its own, as
            // localhost has none here) -> the module is told to substitute the controller.
            if LOCALHOST.contains(&host.as_str()) && inv_port.is_none() {
                a.insert("_substitute_controller".into(), json!(true));
            }
            // _process_origin / _process_remote for the controller's side and the host's.
            match mode {
                Mode::Push => {
                    src = absolute(&src, ctx.local);
                    dest = rsh_target(&host, &dest, user.as_deref());
                }
                Mode::Pull => {
                    src = rsh_target(&host, &src, user.as_deref());
                    dest = pull_dest(&dest, ctx);
                }
            }
        } else {
            src = absolute(&src, ctx.local);
            dest = match mode {
                Mode::Push => absolute(&dest, ctx.local),
                Mode::Pull => pull_dest(&dest, ctx),
            };
        }
        a.insert("src".into(), json!(src));
        a.insert("dest".into(), json!(dest));
        let mut rsync_path = a
            .get("rsync_path")
            .and_then(Value::as_str)
            .map(String::from);
        if remote
            && rsync_path.is_none()
            && let Some(b) = &ctx.become_
            && b.is_sudo()
        {
            rsync_path = Some(format!("sudo -u {} rsync", b.user));
        }
        a.insert("rsync_path".into(), json!(rsync_path));

        if !remote {
            // rsync between two paths of the controller: the module runs there, become kept.
            return self
                .run_module("ansible.posix.synchronize", &a, ctx, Caller::Port)
                .await;
        }
        let bridge = match self.rsync_bridge().await {
            Ok(b) => b,
            Err(why) => {
                return Ok(failed(format!(
                    "ftl2-runner cannot run rsync for synchronize: {why}"
                )));
            }
        };
        let port = a.get("dest_port").and_then(|p| match p {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        });
        let _route = bridge.route(
            &host,
            port.and_then(|p| u16::try_from(p).ok()),
            user.as_deref(),
            rsync_path.as_deref().unwrap_or("rsync"),
            ctx.conn,
        );
        // The module runs on the controller without become (rsync_path carries it to the host).
        let no_vars = Map::new;
        let controller = ModuleCtx {
            conn: &bridge.controller,
            host: CONTROLLER,
            check_mode: ctx.check_mode,
            diff: ctx.diff,
            become_: None,
            vars: &no_vars,
            local: ctx.local,
            no_log: ctx.no_log,
            ansible: ctx.ansible,
            asynchronous: None,
            on_async: ctx.on_async,
        };
        self.run_module("ansible.posix.synchronize", &a, &controller, Caller::Port)
            .await
    }

    /// The job's rsync bridge, started on first use.
    async fn rsync_bridge(&self) -> Result<&rsync_ssh::Bridge, String> {
        self.rsync
            .get_or_init(|| async {
                let access = HostAccess {
                    name: "localhost".into(),
                    connection: "local".into(),
                    address: "localhost".into(),
                    port: 22,
                    user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
                    key: None,
                    password: None,
                    become_: None,
                    timeout: std::time::Duration::from_secs(10),
                    host_key_checking: false,
                    known_hosts: None,
                    python: None,
                    jump: None,
                };
                rsync_ssh::Bridge::start(&self.spawn.env, access)
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Whether `module` names synchronize (the short name is routed to ansible.posix).
pub fn is_synchronize(module: &str) -> bool {
    matches!(
        module,
        "synchronize" | "ansible.posix.synchronize" | "ansible.builtin.synchronize"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_options_that_reach_controller_files_are_refused() {
        for ok in [
            "--exclude=.git",
            "-avz",
            "--delete",
            "--chmod=F644",
            "--filter=- *.tmp",
            "--no-perms",
        ] {
            assert!(vet_rsync_opt(ok, Mode::Push).is_ok(), "{ok}");
        }
        for bad in [
            "--rsh=sh -c id",
            "-e",
            "--log-file=/tmp/x",
            "--files-from=/etc/passwd",
            "--filter=merge /etc/shadow",
            "-L",
            "--copy-links",
            "/etc/",
            "--frobnicate",
            "-avL",
            "--exclude-from=/etc/x",
        ] {
            assert!(vet_rsync_opt(bad, Mode::Push).is_err(), "{bad}");
        }
        // What the receiving side interprets is the host's business when pushing only.
        assert!(vet_rsync_opt("--backup-dir=/var/bak", Mode::Push).is_ok());
        assert!(vet_rsync_opt("--backup-dir=/var/bak", Mode::Pull).is_err());
        assert!(vet_rsync_opt("--copy-links", Mode::Pull).is_ok());
    }

    #[test]
    fn targets_and_local_paths_as_the_plugin_makes_them() {
        assert_eq!(
            rsh_target("10.0.0.5", "/srv/", Some("deploy")),
            "deploy@10.0.0.5:/srv/"
        );
        assert_eq!(rsh_target("::1", "/srv", Some("u")), "[u@::1]:/srv");
        assert_eq!(rsh_target("web", "/srv", None), "web:/srv");
        let dir = std::env::temp_dir().join(format!("ftl2-sync-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("files/site")).unwrap();
        std::fs::create_dir_all(dir.join("other")).unwrap();
        let d = dir.display();
        let local = LocalFiles {
            base: dir.clone(),
            read_roots: vec![dir.clone()],
            write_roots: Vec::new(),
            ..LocalFiles::default()
        };
        assert_eq!(absolute("site/", &local), format!("{d}/files/site/"));
        assert_eq!(absolute("other", &local), format!("{d}/other"));
        assert_eq!(absolute("nothere/", &local), format!("{d}/nothere/"));
        assert_eq!(absolute("/abs/x", &local), "/abs/x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
