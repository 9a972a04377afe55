//! Native modules: Ansible's argument names, result keys and `changed`/check-mode semantics,
//! implemented in Rust and run over any [`Connection`] without Python on the target.

use super::connection::{CommandOutput, Connection, Unreachable};
use serde_json::{Map, Value, json};

/// What a module needs to know besides its arguments.
pub struct ModuleCtx<'a> {
    /// How to reach the host.
    pub conn: &'a Connection,
    /// `--check`: change nothing, report what would change.
    pub check_mode: bool,
    /// `--diff`: include a diff where the module supports it.
    pub diff: bool,
}

/// Names the native modules answer to, with and without the `ansible.builtin.` prefix.
pub fn canonical(module: &str) -> Option<&'static str> {
    let short = module
        .strip_prefix("ansible.builtin.")
        .or_else(|| module.strip_prefix("ansible.legacy."))
        .unwrap_or(module);
    Some(match short {
        "ping" => "ping",
        "command" => "command",
        "shell" => "shell",
        "raw" => "raw",
        _ => return None,
    })
}

/// Run `module` with `args`; an unreachable host is `Err`, everything else a result map.
pub async fn run(
    module: &str,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let Some(name) = canonical(module) else {
        return Ok(failed(format!(
            "ftl2-runner has no module named '{module}' (native modules: ping, command, shell, raw)"
        )));
    };
    match name {
        "ping" => ping(args, ctx).await,
        "command" => command(args, ctx, false).await,
        "shell" => command(args, ctx, true).await,
        "raw" => raw(args, ctx).await,
        _ => unreachable!("canonical() only returns implemented names"),
    }
}

/// A failed result with a message, as modules return it.
pub fn failed(msg: impl Into<String>) -> Map<String, Value> {
    obj(json!({"changed": false, "failed": true, "msg": msg.into()}))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

async fn ping(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let data = args
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or("pong")
        .to_string();
    // Prove the host answers: over SSH a round trip; the controller itself always answers.
    if !matches!(ctx.conn, Connection::Local(_)) {
        let out = ctx.conn.exec("true", None, None).await?;
        if out.rc != 0 {
            return Ok(failed(format!(
                "ping: the host answered but `true` failed with rc={}",
                out.rc
            )));
        }
    }
    if data == "crash" {
        return Ok(failed("boom"));
    }
    Ok(obj(json!({"changed": false, "ping": data})))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

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

/// Quote one word for `/bin/sh`.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "''".into())
}

/// Quote words for `/bin/sh` so they arrive exactly as given.
pub fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| "''".into())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

fn bool_arg(args: &Map<String, Value>, key: &str, default: bool) -> bool {
    match args.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
        }
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => default,
    }
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
    cmd.push_str(&format!(
        "for f in {}; do [ -e \"$f\" ] && exit 0; done; exit 1",
        path.split_whitespace()
            .map(|p| if p.contains(['*', '?', '[']) {
                p.to_string()
            } else {
                quote(p)
            })
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(ctx.conn.exec(&cmd, None, None).await?.rc == 0)
}

async fn command(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
    shell: bool,
) -> Result<Map<String, Value>, Unreachable> {
    let mut args = args.clone();
    // The command itself: argv (list), cmd, or the free form (_raw_params).
    let (cmd_value, cmdline) = if let Some(Value::Array(argv)) = args.get("argv") {
        let words: Vec<String> = argv
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        (json!(words), shell_join(&words))
    } else {
        let raw = str_arg(&args, "cmd")
            .or_else(|| str_arg(&args, "_raw_params"))
            .map(String::from);
        let Some(raw) = raw else {
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
            (json!(words), shell_join(&words))
        }
    };
    let chdir = str_arg(&args, "chdir").map(String::from);
    let skipped_result = |msg: String, stdout: String| {
        let mut m = obj(json!({
            "changed": false, "cmd": cmd_value, "delta": null, "end": null, "msg": msg, "rc": 0,
            "start": null, "stderr": "", "stderr_lines": [], "stdout": stdout,
        }));
        let l = lines(m["stdout"].as_str().unwrap_or_default());
        m.insert("stdout_lines".into(), l);
        m
    };
    if let Some(creates) = str_arg(&args, "creates")
        && path_exists(ctx, creates, chdir.as_deref()).await?
    {
        return Ok(skipped_result(
            format!("Did not run command since '{creates}' exists"),
            format!("skipped, since {creates} exists"),
        ));
    }
    if let Some(removes) = str_arg(&args, "removes")
        && !path_exists(ctx, removes, chdir.as_deref()).await?
    {
        return Ok(skipped_result(
            format!("Did not run command since '{removes}' does not exist"),
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
        let exe = str_arg(&args, "executable").unwrap_or("/bin/sh");
        full.push_str(&format!("exec {} -c {}", quote(exe), quote(&cmdline)));
    } else {
        full.push_str("exec ");
        full.push_str(&cmdline);
    }
    let stdin = str_arg(&args, "stdin").map(|s| {
        let mut s = s.to_string();
        if bool_arg(&args, "stdin_add_newline", true) {
            s.push('\n');
        }
        s.into_bytes()
    });
    let start = chrono::Local::now();
    let CommandOutput { rc, stdout, stderr } = ctx.conn.exec(&full, stdin.as_deref(), None).await?;
    let end = chrono::Local::now();
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

async fn raw(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let Some(cmd) = str_arg(args, "_raw_params").or_else(|| str_arg(args, "cmd")) else {
        return Ok(failed("raw needs a command (free form)"));
    };
    if ctx.check_mode {
        return Ok(obj(
            json!({"changed": false, "skipped": true, "msg": "raw does not support check mode"}),
        ));
    }
    let full = match str_arg(args, "executable") {
        Some(exe) => format!("exec {} -c {}", quote(exe), quote(cmd)),
        None => cmd.to_string(),
    };
    let CommandOutput { rc, stdout, stderr } = ctx.conn.exec(&full, None, None).await?;
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
