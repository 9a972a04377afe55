//! `command`, `shell` and `raw`.

use super::{ModuleCtx, bool_arg, failed, obj, quote, shell_join, text};
use crate::executor::connection::{CommandOutput, Unreachable};
use serde_json::{Map, Value, json};

fn strip_trailing_newlines(s: &str) -> String {
    s.trim_end_matches(['\n', '\r']).to_string()
}

fn lines(s: &str) -> Value {
    json!(s.lines().collect::<Vec<_>>())
}

/// `2026-11-26 22:27:26.076078`, Ansible's command timestamps (local time).
fn ansible_time(t: chrono::DateTime<chrono::Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn ansible_delta(d: chrono::TimeDelta) -> String {
    let us = d.num_microseconds().unwrap_or(0).max(0);
    let secs = us / 1_000_000;
    format!(
        "{}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        us % 1_000_000
    )
}

/// Split free-form `k=v` options (`creates=`, `chdir=`, ...) off a command string, as Ansible does.
fn split_free_form(raw: &str) -> (String, Map<String, Value>) {
    const KEYS: &[&str] = &["creates", "removes", "chdir", "executable", "stdin", "warn"];
    let mut opts = Map::new();
    let Some(words) = shlex::split(raw) else {
        return (raw.to_string(), opts);
    };
    let mut rest = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if KEYS.contains(&k) => {
                opts.insert(k.to_string(), json!(v));
            }
            _ => rest.push(w),
        }
    }
    if opts.is_empty() {
        (raw.to_string(), opts)
    } else {
        (shell_join(&rest), opts)
    }
}

async fn path_exists(
    ctx: &ModuleCtx<'_>,
    path: &str,
    chdir: Option<&str>,
) -> Result<bool, Unreachable> {
    let mut cmd = String::new();
    if let Some(d) = chdir {
        cmd.push_str(&format!("cd {} && ", quote(d)));
    }
    // `creates` may be a glob, as in Ansible.
    let words: Vec<String> = path
        .split_whitespace()
        .map(|p| {
            if p.contains(['*', '?', '[']) {
                p.to_string()
            } else {
                quote(p)
            }
        })
        .collect();
    cmd.push_str(&format!(
        "for f in {}; do [ -e \"$f\" ] && exit 0; done; exit 1",
        words.join(" ")
    ));
    Ok(ctx.sh(&cmd, None).await?.rc == 0)
}

/// `command` (no shell: argv, `cmd` or the free form split like shlex) and `shell`.
pub async fn command(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
    shell: bool,
) -> Result<Map<String, Value>, Unreachable> {
    let mut args = args.clone();
    // The words of a command without a shell (`command`), to run as they are where we can.
    let mut argv: Option<Vec<String>> = None;
    let (cmd_value, cmdline) = if let Some(Value::Array(given)) = args.get("argv") {
        let words: Vec<String> = given
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        let joined = shell_join(&words);
        argv = Some(words.clone());
        (json!(words), joined)
    } else {
        let Some(raw) = super::str_arg_any(&args, &["cmd", "_raw_params"]) else {
            return Ok(failed("no command given"));
        };
        let (raw, free) = if args.contains_key("cmd") {
            (raw, Map::new())
        } else {
            split_free_form(&raw)
        };
        for (k, v) in free {
            args.entry(k).or_insert(v);
        }
        if shell {
            (json!(raw), raw.clone())
        } else {
            let Some(words) = shlex::split(&raw) else {
                return Ok(failed(format!(
                    "cannot parse the command {raw:?}: unbalanced quotes"
                )));
            };
            if words.is_empty() {
                return Ok(failed("no command given"));
            }
            let joined = shell_join(&words);
            argv = Some(words.clone());
            (json!(words), joined)
        }
    };
    let chdir = super::str_arg(&args, "chdir");
    let skipped_result = |msg: String, stdout: String| {
        let l = lines(&stdout);
        obj(json!({
            "changed": false, "cmd": cmd_value, "delta": null, "end": null, "msg": msg, "rc": 0,
            "start": null, "stderr": "", "stderr_lines": [], "stdout": stdout, "stdout_lines": l,
        }))
    };
    let shoulda = if ctx.check_mode { "Would" } else { "Did" };
    if let Some(creates) = super::str_arg(&args, "creates")
        && path_exists(ctx, &creates, chdir.as_deref()).await?
    {
        return Ok(skipped_result(
            format!("{shoulda} not run command since '{creates}' exists"),
            format!("skipped, since {creates} exists"),
        ));
    }
    if let Some(removes) = super::str_arg(&args, "removes")
        && !path_exists(ctx, &removes, chdir.as_deref()).await?
    {
        return Ok(skipped_result(
            format!("{shoulda} not run command since '{removes}' does not exist"),
            format!("skipped, since {removes} does not exist"),
        ));
    }
    if ctx.check_mode {
        let mut m = skipped_result(
            "Command would have run if not in check mode".into(),
            String::new(),
        );
        m.insert("skipped".into(), json!(true));
        return Ok(m);
    }

    let mut full = String::new();
    if let Some(d) = &chdir {
        full.push_str(&format!("cd {} || exit 1\n", quote(d)));
    }
    if shell {
        let exe = super::str_arg(&args, "executable").unwrap_or_else(|| "/bin/sh".into());
        full.push_str(&format!("exec {} -c {}", quote(&exe), quote(&cmdline)));
    } else {
        if let Some(program) = argv.as_ref().and_then(|w| w.first()) {
            full.push_str(&exec_check(program));
        }
        full.push_str("exec ");
        full.push_str(&cmdline);
    }
    let stdin = super::str_arg(&args, "stdin").map(|s| {
        let mut s = s;
        if bool_arg(&args, "stdin_add_newline", true) {
            s.push('\n');
        }
        s.into_bytes()
    });
    let start = chrono::Local::now();
    let direct = match (&argv, &chdir, shell) {
        (Some(words), None, false) => {
            ctx.conn
                .run_argv(words, stdin.as_deref(), ctx.become_.as_ref())
                .await
        }
        _ => None,
    };
    let CommandOutput { rc, stdout, stderr } = match direct {
        Some(out) => out,
        None => ctx.sh(&full, stdin.as_deref()).await?,
    };
    let end = chrono::Local::now();
    if !shell
        && rc == 127
        && let Some(errno) = String::from_utf8_lossy(&stderr)
            .strip_prefix(EXEC_FAILED)
            .and_then(|n| n.trim_end().parse::<i32>().ok())
    {
        let words = argv.unwrap_or_default();
        return Ok(exec_failed(errno, &words, ctx.ansible.core().await));
    }
    let strip = bool_arg(&args, "strip_empty_ends", true);
    let (out, err) = if strip {
        (
            strip_trailing_newlines(&text(&stdout)),
            strip_trailing_newlines(&text(&stderr)),
        )
    } else {
        (text(&stdout), text(&stderr))
    };
    let mut m = obj(json!({
        "changed": true,
        "cmd": cmd_value,
        "delta": ansible_delta(end - start),
        "end": ansible_time(end),
        "msg": if rc == 0 { "" } else { "non-zero return code" },
        "rc": rc,
        "start": ansible_time(start),
        "stderr": err,
        "stderr_lines": lines(&err),
        "stdout": out,
        "stdout_lines": lines(&out),
    }));
    if rc != 0 {
        m.insert("failed".into(), json!(true));
    }
    Ok(m)
}

/// What the check before `exec` says on stderr when the program cannot be started.
const EXEC_FAILED: &str = "FTL2-EXEC-FAILED ";

/// Lines before `exec program ...` that find the program as Python's exec does (a name with a
/// `/` as it is, else the first executable file of that name on PATH) and, where exec would fail,
/// say so with its errno instead of letting the shell print its own `not found` or, worse, run
/// a file that is not a program as a shell script: missing (ENOENT), a directory or not
/// executable (EACCES), neither `#!` nor ELF at its start (ENOEXEC; unless the host registers
/// other binary formats with binfmt_misc, where only exec can tell). The distribution's own
/// program directories are not read (DESIGN.md).
fn exec_check(program: &str) -> String {
    // Builtins and redirections only: no process is started for the check (a `$(...)` would
    // fork one on every command). `read` takes the first line, in dash a byte per system call:
    // ~3.5 ms for /usr/bin/echo, whose first newline is 4 KB in, on every command; hence the
    // distribution's directories, where files are programs, are not read.
    format!(
        "ftl2_prog={p}\n\
         case $ftl2_prog in\n\
         */*) ftl2_path=$ftl2_prog ;;\n\
         *) ftl2_path=; ftl2_ifs=$IFS; IFS=:; set -f\n\
         for ftl2_d in $PATH; do \
         if [ -f \"${{ftl2_d:-.}}/$ftl2_prog\" ] && [ -x \"${{ftl2_d:-.}}/$ftl2_prog\" ]; then \
         ftl2_path=${{ftl2_d:-.}}/$ftl2_prog; break; fi; done\n\
         IFS=$ftl2_ifs; set +f ;;\n\
         esac\n\
         if [ -z \"$ftl2_path\" ] || [ ! -e \"$ftl2_path\" ]; then echo '{EXEC_FAILED}2' >&2; exit 127; \
         elif [ -d \"$ftl2_path\" ] || [ ! -x \"$ftl2_path\" ]; then echo '{EXEC_FAILED}13' >&2; exit 127; \
         fi\n\
         case $ftl2_path in */../*) ;; /bin/*|/sbin/*|/usr/bin/*|/usr/sbin/*) ftl2_path= ;; esac\n\
         if [ -f \"$ftl2_path\" ] && [ -r \"$ftl2_path\" ]; then \
         ftl2_head=; read -r ftl2_head < \"$ftl2_path\"\n\
         case $ftl2_head in '#!'*|'\x7fELF'*) ;; *) ftl2_fmt=\n\
         for ftl2_f in /proc/sys/fs/binfmt_misc/*; do \
         case ${{ftl2_f##*/}} in register|status|'*') ;; *) ftl2_fmt=1 ;; esac; done\n\
         [ -n \"$ftl2_fmt\" ] || {{ echo '{EXEC_FAILED}8' >&2; exit 127; }} ;; esac\n\
         fi\n",
        p = quote(program)
    )
}

/// The command module's result for a program that could not be started: `run_command`'s
/// failure in the EE's version (2.19 on: "Error executing command."; before: Python's OSError
/// text), `rc` the errno, `cmd` the words as `_clean_args` prints them.
fn exec_failed(
    errno: i32,
    words: &[String],
    core: Option<&crate::executor::ansible::Core>,
) -> Map<String, Value> {
    let generic = core.is_none_or(|c| c.exec_error_generic);
    let msg = if generic {
        "Error executing command.".to_string()
    } else {
        let text = std::io::Error::from_raw_os_error(errno).to_string();
        let text = text.split(" (os error").next().unwrap_or(&text).to_string();
        format!(
            "[Errno {errno}] {text}: {}",
            python_bytes_repr(words.first().map(String::as_str).unwrap_or(""))
        )
    };
    let mut m = obj(json!({
        "changed": false, "cmd": clean_args(words), "msg": msg, "rc": errno,
        "stderr": "", "stderr_lines": [], "stdout": "", "stdout_lines": [],
    }));
    m.insert("failed".into(), json!(true));
    m
}

/// `AnsibleModule._clean_args`: each word as Python's `shlex.quote` gives it, a password-like
/// option's value masked (its `heuristic_log_sanitize` of `user:pass@` URLs is not done).
fn clean_args(words: &[String]) -> String {
    let mut out = Vec::with_capacity(words.len());
    let mut next_is_password = false;
    for w in words {
        if next_is_password {
            next_is_password = false;
            out.push(python_quote("********"));
            continue;
        }
        // PASSWD_ARG_RE, `^[-]{0,2}pass[-]?(word|wd)?`, matched at the start: any word that
        // begins with at most two dashes and `pass`.
        let bare = w.trim_start_matches('-');
        if w.len() - bare.len() <= 2 && bare.starts_with("pass") {
            if let Some(eq) = w.find('=') {
                out.push(python_quote(&format!("{}=********", &w[..eq])));
                continue;
            }
            next_is_password = true;
        }
        out.push(python_quote(w));
    }
    out.join(" ")
}

/// Python's `shlex.quote`.
fn python_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// Python's `repr()` of a name as bytes (`b'prog'`), as OSError messages print file names.
fn python_bytes_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

/// `raw`: the command line as given, no module machinery at all.
pub async fn raw(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let Some(cmd) = super::str_arg_any(args, &["_raw_params", "cmd"]) else {
        return Ok(failed("raw needs a command (free form)"));
    };
    if ctx.check_mode {
        return Ok(obj(
            json!({"changed": false, "skipped": true, "msg": "raw does not support check mode"}),
        ));
    }
    let full = match super::str_arg(args, "executable") {
        Some(exe) => format!("exec {} -c {}", quote(&exe), quote(&cmd)),
        None => cmd,
    };
    let CommandOutput { rc, stdout, stderr } = ctx.sh(&full, None).await?;
    let (out, err) = (text(&stdout), text(&stderr));
    let mut m = obj(json!({
        "changed": true, "rc": rc, "stderr": err, "stderr_lines": lines(&err),
        "stdout": out, "stdout_lines": lines(&out),
    }));
    if rc != 0 {
        m.insert("failed".into(), json!(true));
        m.insert("msg".into(), json!("non-zero return code"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_form_options_are_split_off() {
        let (cmd, opts) = split_free_form("echo hi creates=/etc/passwd chdir=/tmp");
        assert_eq!(cmd, "echo hi");
        assert_eq!(opts["creates"], json!("/etc/passwd"));
        assert_eq!(opts["chdir"], json!("/tmp"));
        assert_eq!(split_free_form("echo a=b").0, "echo a=b");
    }

    /// The check before `exec`, run by dash and bash as the target runs it: the errno it
    /// reports (0: it lets exec go ahead).
    #[test]
    fn exec_check_finds_what_exec_would_refuse() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ftl2-exec-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, body: &[u8], mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p.to_string_lossy().into_owned()
        };
        let script = file("script", b"#!/bin/sh\necho hi\n", 0o755);
        let text = file("text", b"echo ran as a script\n", 0o755);
        let empty = file("empty", b"", 0o755);
        let plain = file("plain", b"#!/bin/sh\n", 0o644);
        let elf = dir.join("true").to_string_lossy().into_owned();
        std::fs::copy("/bin/true", &elf).unwrap();
        let cases: [(&str, i32); 9] = [
            (&script, 0),
            (&elf, 0),
            ("true", 0),
            (&text, 8),
            (&empty, 8),
            (&plain, 13),
            ("/etc", 13),
            ("/nonexistent/prog", 2),
            ("no-such-program-ftl2", 2),
        ];
        for shell in ["dash", "bash"] {
            for (program, errno) in cases {
                let out = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(format!("{}exit 0", exec_check(program)))
                    .output()
                    .unwrap();
                let said = String::from_utf8_lossy(&out.stderr);
                let got = said
                    .strip_prefix(EXEC_FAILED)
                    .map_or(0, |n| n.trim().parse().unwrap());
                assert_eq!((program, got), (program, errno), "{shell}: {said}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn delta_format() {
        assert_eq!(
            ansible_delta(chrono::TimeDelta::microseconds(153_668)),
            "0:00:00.153668"
        );
        assert_eq!(
            ansible_delta(chrono::TimeDelta::seconds(3723)),
            "1:02:03.000000"
        );
    }
}
