//! The ansible-playbook / ansible options AWX writes to `env/cmdline`, parsed into typed settings.
//!
//! AWX builds the command line it would have run (`--check`, `-u root`, `--become`, `--forks=5`,
//! `-l web`, `-vvv`, ...); we do not run ansible-playbook, but every one of those options still
//! means something for the job, so they are split like POSIX shlex and read here.

use anyhow::{Result, anyhow};

/// The job options carried by `env/cmdline` (and the matching kwargs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmdlineOptions {
    /// `-C/--check`: report what would change, change nothing.
    pub check: bool,
    /// `-D/--diff`: include diffs in results.
    pub diff: bool,
    /// `-u/--user`: the remote user from the machine credential.
    pub user: Option<String>,
    /// `-b/--become`.
    pub become_: bool,
    /// `--become-method`.
    pub become_method: Option<String>,
    /// `--become-user`.
    pub become_user: Option<String>,
    /// `-k/--ask-pass`: the SSH password is in the passwords map.
    pub ask_pass: bool,
    /// `-K/--ask-become-pass`: the become password is in the passwords map.
    pub ask_become_pass: bool,
    /// `--ask-vault-pass` or `--vault-id`/`--vault-password-file` were given.
    pub vault: bool,
    /// `-f/--forks`.
    pub forks: Option<u32>,
    /// `-l/--limit`.
    pub limit: Option<String>,
    /// Number of `-v`.
    pub verbosity: u8,
    /// `-t/--tags`.
    pub tags: Vec<String>,
    /// `--skip-tags`.
    pub skip_tags: Vec<String>,
    /// `--start-at-task`.
    pub start_at_task: Option<String>,
    /// `-e/--extra-vars`, in order (`@file`, JSON or `k=v`).
    pub extra_vars: Vec<String>,
    /// `--private-key/--key-file`.
    pub private_key_file: Option<String>,
    /// `-T/--timeout`: connection timeout in seconds.
    pub timeout: Option<u32>,
    /// `-B/--background` (ad hoc): run asynchronously, failing after this many seconds.
    pub background: Option<u64>,
    /// `-P/--poll` (ad hoc): seconds between checks of a `-B` job (0: do not wait for it).
    pub poll: Option<u64>,
    /// `-c/--connection`.
    pub connection: Option<String>,
    /// `-m/--module-name` (ad hoc).
    pub module_name: Option<String>,
    /// `-a/--args` (ad hoc).
    pub module_args: Option<String>,
    /// Positional arguments: the host pattern for ad hoc commands.
    pub positional: Vec<String>,
    /// Options we do not interpret, kept so they can be reported.
    pub ignored: Vec<String>,
}

/// An option the job was given but cannot honour, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unhonoured {
    /// The option as given (with its value).
    pub option: String,
    /// Why it cannot be honoured.
    pub why: &'static str,
    /// Ignoring it would run more than asked (`--start-at-task`): never just a warning.
    pub runs_more: bool,
    /// Not an option ansible-playbook or ansible has at all (a typo).
    pub unknown: bool,
}

/// Flags that take no value, by every spelling.
const FLAGS: &[&str] = &[
    "-C",
    "--check",
    "-D",
    "--diff",
    "-b",
    "--become",
    "-k",
    "--ask-pass",
    "-K",
    "--ask-become-pass",
    "--ask-vault-pass",
    "--ask-vault-password",
    "-v",
    "--verbose",
    "--flush-cache",
    "--force-handlers",
    "--list-hosts",
    "--list-tasks",
    "--list-tags",
    "--syntax-check",
    "--step",
    "-o",
    "--one-line",
];

impl CmdlineOptions {
    /// Split `text` like POSIX shlex and parse the options.
    pub fn parse(text: &str) -> Result<CmdlineOptions> {
        let words = shlex::split(text)
            .ok_or_else(|| anyhow!("env/cmdline has unbalanced quotes: {text:?}"))?;
        Self::parse_words(&words)
    }

    /// Parse already-split arguments.
    pub fn parse_words(words: &[String]) -> Result<CmdlineOptions> {
        let mut o = CmdlineOptions::default();
        let mut i = 0;
        while i < words.len() {
            let w = &words[i];
            i += 1;
            if w == "--" {
                o.positional.extend(words[i..].iter().cloned());
                break;
            }
            if !w.starts_with('-') || w == "-" {
                o.positional.push(w.clone());
                continue;
            }
            // Short clusters of flags: -vvv, -bK, -CD.
            if !w.starts_with("--") && w.len() > 2 && w[1..].chars().all(|c| "vbkKCD".contains(c)) {
                for c in w[1..].chars() {
                    o.flag(&format!("-{c}"));
                }
                continue;
            }
            let (name, inline) = match w.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ if !w.starts_with("--") && w.len() > 2 => {
                    (w[..2].to_string(), Some(w[2..].to_string()))
                }
                _ => (w.clone(), None),
            };
            if inline.is_none() && FLAGS.contains(&name.as_str()) {
                o.flag(&name);
                continue;
            }
            let mut value = || -> Result<String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                let v = words
                    .get(i)
                    .cloned()
                    .ok_or_else(|| anyhow!("option {name} needs a value"))?;
                i += 1;
                Ok(v)
            };
            match name.as_str() {
                "-u" | "--user" | "--remote-user" => o.user = Some(value()?),
                "--become-method" => o.become_method = Some(value()?),
                "--become-user" => o.become_user = Some(value()?),
                "-f" | "--forks" => {
                    let v = value()?;
                    let n: u32 = v
                        .parse()
                        .map_err(|_| anyhow!("--forks {v:?} is not a number"))?;
                    o.forks = Some(n);
                }
                "-l" | "--limit" => o.limit = Some(value()?),
                "-t" | "--tags" => o.tags.extend(split_list(&value()?)),
                "--skip-tags" => o.skip_tags.extend(split_list(&value()?)),
                "--start-at-task" => o.start_at_task = Some(value()?),
                "-e" | "--extra-vars" => o.extra_vars.push(value()?),
                "--private-key" | "--key-file" => o.private_key_file = Some(value()?),
                "-T" | "--timeout" => {
                    let v = value()?;
                    o.timeout = Some(
                        v.parse()
                            .map_err(|_| anyhow!("--timeout {v:?} is not a number"))?,
                    );
                }
                "-B" | "--background" | "-P" | "--poll" => {
                    let v = value()?;
                    let n: u64 = v
                        .parse()
                        .map_err(|_| anyhow!("{name} {v:?} is not a number of seconds"))?;
                    if matches!(name.as_str(), "-B" | "--background") {
                        o.background = Some(n);
                    } else {
                        o.poll = Some(n);
                    }
                }
                "-c" | "--connection" => o.connection = Some(value()?),
                "-m" | "--module-name" => o.module_name = Some(value()?),
                "-a" | "--args" => o.module_args = Some(value()?),
                "--vault-id" | "--vault-password-file" | "--vault-pass-file" => {
                    value()?;
                    o.vault = true;
                }
                "-i"
                | "--inventory"
                | "--inventory-file"
                | "-M"
                | "--module-path"
                | "--ssh-common-args"
                | "--ssh-extra-args"
                | "--scp-extra-args"
                | "--sftp-extra-args"
                | "--become-password-file"
                | "--connection-password-file"
                | "--playbook-dir" => {
                    let v = value()?;
                    o.ignored.push(format!("{name} {v}"));
                }
                _ => o.ignored.push(w.clone()),
            }
        }
        Ok(o)
    }

    /// Every option given that the job cannot honour, in the order given (`adhoc`: the job
    /// is an ad hoc command, which honours `-B`/`-P`).
    pub fn unhonoured(&self, adhoc: bool) -> Vec<Unhonoured> {
        let mut out = Vec::new();
        if let Some(t) = &self.start_at_task {
            out.push(Unhonoured {
                option: format!("--start-at-task {t}"),
                why: "a script has no tasks to start at; the whole script would run",
                runs_more: true,
                unknown: false,
            });
        }
        for given in &self.ignored {
            let name = given.split([' ', '=']).next().unwrap_or(given);
            let (why, unknown) = match name {
                "--list-hosts" | "--list-tasks" | "--list-tags" | "--syntax-check" | "--step" => (
                    "it does not apply to a script, which ftl2-runner would run",
                    false,
                ),
                "--flush-cache" => ("scripts do not read Ansible's fact cache", false),
                "--force-handlers" => ("scripts have no handlers", false),
                "-o" | "--one-line" => ("ftl2-runner prints ad hoc results in full", false),
                "-i" | "--inventory" | "--inventory-file" => {
                    ("the job's inventory comes with the job", false)
                }
                "-M" | "--module-path" => (
                    "modules come from the EE's ansible-core and collections",
                    false,
                ),
                "--ssh-common-args" | "--ssh-extra-args" | "--scp-extra-args"
                | "--sftp-extra-args" => {
                    ("ftl2-runner's SSH client takes no OpenSSH arguments", false)
                }
                "--become-password-file" | "--connection-password-file" => {
                    ("passwords come from the job's credentials", false)
                }
                "--playbook-dir" => ("there is no playbook directory", false),
                _ => ("ftl2-runner does not know this option", true),
            };
            out.push(Unhonoured {
                option: given.clone(),
                why,
                runs_more: false,
                unknown,
            });
        }
        // Ad hoc commands honour them; a script sets `_async`/`_poll` on each call instead.
        for (flag, value) in [("-B", self.background), ("-P", self.poll)] {
            if let Some(v) = value.filter(|_| !adhoc) {
                out.push(Unhonoured {
                    option: format!("{flag} {v}"),
                    why: "a script sets _async/_poll on each call that should run in the background",
                    runs_more: false,
                    unknown: false,
                });
            }
        }
        if self.vault {
            out.push(Unhonoured {
                option: "--vault-id / --ask-vault-pass".into(),
                why: "scripts get secrets from the job's credentials, not from vaults",
                runs_more: false,
                unknown: false,
            });
        }
        out
    }

    fn flag(&mut self, name: &str) {
        match name {
            "-C" | "--check" => self.check = true,
            "-D" | "--diff" => self.diff = true,
            "-b" | "--become" => self.become_ = true,
            "-k" | "--ask-pass" => self.ask_pass = true,
            "-K" | "--ask-become-pass" => self.ask_become_pass = true,
            "--ask-vault-pass" | "--ask-vault-password" => self.vault = true,
            "-v" | "--verbose" => self.verbosity = self.verbosity.saturating_add(1),
            other => self.ignored.push(other.to_string()),
        }
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_and_poll_are_read_and_named_for_scripts() {
        let o = CmdlineOptions::parse("-B 30 -P5 all").unwrap();
        assert_eq!((o.background, o.poll), (Some(30), Some(5)));
        let said: Vec<String> = o.unhonoured(false).into_iter().map(|u| u.option).collect();
        assert_eq!(said, ["-B 30", "-P 5"]);
        assert!(o.unhonoured(true).is_empty(), "ad hoc commands honour them");
        assert!(CmdlineOptions::parse("--background=soon all").is_err());
    }

    #[test]
    fn awx_job_cmdline() {
        let o = CmdlineOptions::parse(
            "--check -u root --ask-pass --become --diff --become-method sudo --become-user admin \
             --ask-become-pass --forks=5 -l 'web:&prod' -vvv -t a,b --skip-tags=c \
             --start-at-task='do it' -e @/runner/env/tmpabc",
        )
        .unwrap();
        assert!(o.check && o.diff && o.become_ && o.ask_pass && o.ask_become_pass);
        assert_eq!(o.user.as_deref(), Some("root"));
        assert_eq!(o.become_method.as_deref(), Some("sudo"));
        assert_eq!(o.become_user.as_deref(), Some("admin"));
        assert_eq!(o.forks, Some(5));
        assert_eq!(o.limit.as_deref(), Some("web:&prod"));
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.tags, ["a", "b"]);
        assert_eq!(o.skip_tags, ["c"]);
        assert_eq!(o.start_at_task.as_deref(), Some("do it"));
        assert_eq!(o.extra_vars, ["@/runner/env/tmpabc"]);
    }

    #[test]
    fn adhoc_cmdline_has_the_pattern_last() {
        let o = CmdlineOptions::parse("-u root -f 10 -vv all:!db").unwrap();
        assert_eq!(o.forks, Some(10));
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.positional, ["all:!db"]);
        assert_eq!(
            CmdlineOptions::parse("-u root --forks=5 -v")
                .unwrap()
                .verbosity,
            1
        );
    }

    #[test]
    fn options_we_cannot_honour_are_listed_with_the_reason() {
        let o =
            CmdlineOptions::parse("--start-at-task x --chek -t web --syntax-check -C --vault-id x")
                .unwrap();
        let u = o.unhonoured(false);
        let names: Vec<&str> = u.iter().map(|x| x.option.as_str()).collect();
        assert_eq!(
            names,
            [
                "--start-at-task x",
                "--chek",
                "--syntax-check",
                "--vault-id / --ask-vault-pass"
            ]
        );
        assert!(u[0].runs_more && !u[0].unknown);
        assert!(u[1].unknown && !u[1].runs_more);
        assert!(!u[2].unknown && u[2].why.contains("does not apply to a script"));
        assert!(
            CmdlineOptions::parse("-C -D -u root -b -vv -l web -f 5")
                .unwrap()
                .unhonoured(false)
                .is_empty()
        );
    }

    #[test]
    fn errors_are_clear() {
        assert!(CmdlineOptions::parse("-u 'root").is_err());
        assert!(
            format!("{:#}", CmdlineOptions::parse("--forks=many").unwrap_err()).contains("forks")
        );
        assert!(CmdlineOptions::parse("-l").is_err());
    }
}
