//! The text ansible-playbook (default callback) and ansible (minimal callback, ad hoc) print,
//! so AWX's output pane looks the same: banners, per-host lines, `-v` result dumps, colours,
//! and the PLAY RECAP.

use crate::pyjson;
use crate::tree::{HostStats, HostStatus, sorted};
use serde_json::{Map, Value};

/// Width ansible-playbook pads banners to (`TASK [x] ****...`).
const BANNER_WIDTH: usize = 79;

/// Ansible's colours (C.COLOR_*), as ANSI SGR codes.
pub const OK: &str = "0;32";
/// C.COLOR_CHANGED.
pub const CHANGED: &str = "0;33";
/// C.COLOR_ERROR.
pub const ERROR: &str = "0;31";
/// C.COLOR_SKIP.
pub const SKIP: &str = "0;36";
/// C.COLOR_UNREACHABLE.
pub const UNREACHABLE: &str = "1;31";
/// C.COLOR_WARN.
pub const WARN: &str = "1;35";
/// C.COLOR_DEBUG.
pub const DEBUG: &str = "1;30";

/// How results are printed for this job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// `-v` count from the job's command line.
    pub verbosity: u8,
    /// ANSIBLE_FORCE_COLOR (and not ANSIBLE_NOCOLOR) in the job's environment.
    pub color: bool,
    /// Ad hoc output (`ansible`'s minimal callback) instead of ansible-playbook's.
    pub adhoc: bool,
    /// ANSIBLE_DISPLAY_ARGS_TO_STDOUT: events carry the task's arguments (off by default, as
    /// in Ansible: arguments may hold secrets).
    pub display_args: bool,
}

impl Style {
    /// Colour every line of `text` (Ansible colours line by line), or leave it plain.
    pub fn paint(&self, text: &str, color: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        text.split("\r\n")
            .map(|l| format!("\x1b[{color}m{l}\x1b[0m"))
            .collect::<Vec<_>>()
            .join("\r\n")
    }
}

/// The default callback's lines for a polled async job: `ASYNC POLL on h: jid=.. started=..
/// finished=..`, `ASYNC OK on h: jid=..`, `ASYNC FAILED on h: jid=..` (values as Python prints
/// them: 2.15's 0/1, 2.21's True/False).
pub fn async_line(style: &Style, event: &str, host: &str, res: &Map<String, Value>) -> String {
    let py = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "None".to_string(),
        Some(Value::Bool(true)) => "True".into(),
        Some(Value::Bool(false)) => "False".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let jid = match res.get("ansible_job_id") {
        None => res
            .get("async_result")
            .and_then(|r| r.get("ansible_job_id")),
        some => some,
    };
    let text = match event {
        "runner_on_async_poll" => format!(
            "ASYNC POLL on {host}: jid={} started={} finished={}",
            py(res.get("ansible_job_id")),
            py(res.get("started")),
            py(res.get("finished"))
        ),
        "runner_on_async_ok" => format!("ASYNC OK on {host}: jid={}", py(jid)),
        _ => format!("ASYNC FAILED on {host}: jid={}", py(jid)),
    };
    style.paint(&text, DEBUG)
}

/// `TASK [x] *****...` padded like ansible-playbook's banner.
pub fn banner(msg: &str) -> String {
    let stars = BANNER_WIDTH.saturating_sub(msg.chars().count()).max(3);
    format!("{msg} {}", "*".repeat(stars))
}

/// Results as the callbacks dump them: internal keys dropped, keys sorted, `diff` and
/// `exception` only from -vvv, indented 4 when asked (or at -vvv).
fn dump(res: &Map<String, Value>, verbosity: u8, indent: bool) -> String {
    let clean: Map<String, Value> = res
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("_ansible") && !(verbosity < 3 && (*k == "diff" || *k == "exception"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let v = sorted(&Value::Object(clean));
    if indent
        || verbosity > 2
        || res
            .get("_ansible_verbose_always")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        let _ = serde::Serialize::serialize(&v, &mut ser);
        String::from_utf8_lossy(&out).replace('\n', "\r\n")
    } else {
        pyjson::to_string(&v)
    }
}

/// `host | CHANGED | rc=0 >>` and the command's output, as the minimal callback shows commands.
fn command_text(style: &Style, status: HostStatus, host: &str, res: &Map<String, Value>) -> String {
    let text_of = |k: &str| res.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (caption, color) = match status {
        HostStatus::Changed => ("CHANGED", CHANGED),
        HostStatus::Ok => ("SUCCESS", OK),
        _ => ("FAILED", ERROR),
    };
    let rc = res
        .get("rc")
        .map(|r| r.to_string())
        .unwrap_or_else(|| "-1".into());
    let body = format!(
        "{}{}{}",
        text_of("stdout"),
        text_of("stderr"),
        text_of("msg")
    );
    let mut t = format!("{host} | {caption} | rc={rc} >>\n{body}");
    while t.ends_with('\n') {
        t.pop();
    }
    style.paint(&t.replace('\n', "\r\n"), color)
}

/// Modules whose ad hoc output is `host | CHANGED | rc=0 >>` + their text (C.MODULE_NO_JSON).
fn no_json(action: &str) -> bool {
    let short = action.rsplit('.').next().unwrap_or(action);
    matches!(
        short,
        "command" | "shell" | "raw" | "win_command" | "win_shell"
    )
}

/// The event name and text of one host's result.
pub fn host_line(
    style: &Style,
    status: HostStatus,
    host: &str,
    action: &str,
    res: &Map<String, Value>,
    ignored: bool,
) -> (&'static str, String) {
    let event = match status {
        HostStatus::Ok | HostStatus::Changed => "runner_on_ok",
        HostStatus::Failed => "runner_on_failed",
        HostStatus::Unreachable => "runner_on_unreachable",
        HostStatus::Skipped => "runner_on_skipped",
    };
    let warnings = result_warnings(style, res);
    if style.adhoc {
        return (
            event,
            warnings + &adhoc_line(style, status, host, action, res),
        );
    }
    (
        event,
        warnings + &result_line(style, status, host, res, ignored),
    )
}

/// How many bytes of a host's text are its warnings (where deprecations go).
pub fn warnings_len(style: &Style, res: &Map<String, Value>) -> usize {
    result_warnings(style, res).len()
}

/// The lines ansible-core printed for a module's deprecations ([text, SGR colour] pairs from the
/// helper), as they go into the host's text.
pub fn deprecation_text(style: &Style, lines: &[Value]) -> String {
    let mut out = String::new();
    for line in lines {
        let text = line.get(0).and_then(Value::as_str).unwrap_or("");
        let color = line.get(1).and_then(Value::as_str).unwrap_or("");
        let text = text.trim_end_matches('\n').replace('\n', "\r\n");
        if color.is_empty() {
            out.push_str(&text);
        } else {
            out.push_str(&style.paint(&text, color));
        }
        out.push_str("\r\n");
    }
    out
}

/// The warnings a module returned, shown before its host line as ansible-playbook shows them.
fn result_warnings(style: &Style, res: &Map<String, Value>) -> String {
    let Some(Value::Array(list)) = res.get("warnings") else {
        return String::new();
    };
    let mut text = String::new();
    for w in list {
        let msg = match w {
            Value::String(s) => s.clone(),
            Value::Object(m) => m
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            other => other.to_string(),
        };
        text.push_str(&warning(style, msg.trim()));
        text.push_str("\r\n");
    }
    text
}

fn result_line(
    style: &Style,
    status: HostStatus,
    host: &str,
    res: &Map<String, Value>,
    ignored: bool,
) -> String {
    let v = style.verbosity;
    match status {
        HostStatus::Ok | HostStatus::Changed => {
            let (word, color) = if status == HostStatus::Changed {
                ("changed", CHANGED)
            } else {
                ("ok", OK)
            };
            let more = if v > 0 {
                format!(" => {}", dump(res, v, false))
            } else {
                String::new()
            };
            style.paint(&format!("{word}: [{host}]{more}"), color)
        }
        HostStatus::Failed => {
            let mut t = style.paint(
                &format!("fatal: [{host}]: FAILED! => {}", dump(res, v, false)),
                ERROR,
            );
            if ignored {
                t.push_str("\r\n");
                t.push_str(&style.paint("...ignoring", SKIP));
            }
            t
        }
        HostStatus::Unreachable => style.paint(
            &format!("fatal: [{host}]: UNREACHABLE! => {}", dump(res, v, false)),
            UNREACHABLE,
        ),
        HostStatus::Skipped => {
            let more = if v > 0 {
                format!(" => {}", dump(res, v, false))
            } else {
                String::new()
            };
            style.paint(&format!("skipping: [{host}]{more}"), SKIP)
        }
    }
}

fn adhoc_line(
    style: &Style,
    status: HostStatus,
    host: &str,
    action: &str,
    res: &Map<String, Value>,
) -> String {
    match status {
        // As the minimal callback: a failure shows the text unless there is module_stderr, a
        // success unless it came from async (it has an ansible_job_id).
        HostStatus::Failed if no_json(action) && !res.contains_key("module_stderr") => {
            command_text(style, status, host, res)
        }
        HostStatus::Ok | HostStatus::Changed
            if no_json(action) && !res.contains_key("ansible_job_id") =>
        {
            command_text(style, status, host, res)
        }
        HostStatus::Ok => style.paint(
            &format!("{host} | SUCCESS => {}", dump(res, style.verbosity, true)),
            OK,
        ),
        HostStatus::Changed => style.paint(
            &format!("{host} | CHANGED => {}", dump(res, style.verbosity, true)),
            CHANGED,
        ),
        HostStatus::Failed => style.paint(
            &format!("{host} | FAILED! => {}", dump(res, style.verbosity, true)),
            ERROR,
        ),
        HostStatus::Unreachable => style.paint(
            &format!(
                "{host} | UNREACHABLE! => {}",
                dump(res, style.verbosity, true)
            ),
            UNREACHABLE,
        ),
        HostStatus::Skipped => style.paint(&format!("{host} | SKIPPED"), SKIP),
    }
}

fn counter(style: &Style, name: &str, n: u64, color: &str) -> String {
    let s = format!("{name}={:<4}", n);
    if n != 0 { style.paint(&s, color) } else { s }
}

/// The PLAY RECAP block (without its trailing blank line).
pub fn recap(style: &Style, hosts: &[(String, HostStats)]) -> String {
    let mut text = format!("\r\n{}", banner("PLAY RECAP"));
    for (h, s) in hosts {
        let host = if !style.color {
            format!("{h:<26}")
        } else {
            let color = if s.failures > 0 || s.dark > 0 {
                ERROR
            } else if s.changed > 0 {
                CHANGED
            } else {
                OK
            };
            format!("{:<37}", style.paint(h, color))
        };
        text.push_str(&format!(
            "\r\n{host} : {} {} {} {} {} {} {}",
            counter(style, "ok", s.ok, OK),
            counter(style, "changed", s.changed, CHANGED),
            counter(style, "unreachable", s.dark, UNREACHABLE),
            counter(style, "failed", s.failures, ERROR),
            counter(style, "skipped", s.skipped, SKIP),
            counter(style, "rescued", s.rescued, OK),
            counter(style, "ignored", s.ignored, WARN),
        ));
    }
    text
}

/// `[WARNING]: msg`, as Ansible prints warnings.
pub fn warning(style: &Style, msg: &str) -> String {
    style.paint(&format!("[WARNING]: {msg}"), WARN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::modules::obj;
    use serde_json::json;

    #[test]
    fn banners_and_recap_match_ansible_playbook() {
        // From worker.stream / worker-awxlike.stream.
        assert_eq!(
            banner("PLAY [all]"),
            "PLAY [all] *********************************************************************"
        );
        assert_eq!(
            banner("TASK [ping it]"),
            "TASK [ping it] *****************************************************************"
        );
        let s = HostStats {
            ok: 2,
            changed: 1,
            ..Default::default()
        };
        assert_eq!(
            recap(&Style::default(), &[("localhost".into(), s.clone())]),
            "\r\nPLAY RECAP *********************************************************************\r\nlocalhost                  : ok=2    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   "
        );
        let color = Style {
            color: true,
            ..Default::default()
        };
        let s = HostStats {
            ok: 3,
            changed: 1,
            ..Default::default()
        };
        assert_eq!(
            recap(&color, &[("localhost".into(), s)]),
            "\r\nPLAY RECAP *********************************************************************\r\n\x1b[0;33mlocalhost\x1b[0m                  : \x1b[0;32mok=3   \x1b[0m \x1b[0;33mchanged=1   \x1b[0m unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   "
        );
        let f = HostStats {
            failures: 1,
            ..Default::default()
        };
        assert_eq!(
            recap(&color, &[("localhost".into(), f)]),
            "\r\nPLAY RECAP *********************************************************************\r\n\x1b[0;31mlocalhost\x1b[0m                  : ok=0    changed=0    unreachable=0    \x1b[0;31mfailed=1   \x1b[0m skipped=0    rescued=0    ignored=0   "
        );
    }

    #[test]
    fn host_lines_like_the_fixtures() {
        let v1 = Style {
            verbosity: 1,
            color: true,
            ..Default::default()
        };
        let (_, t) = host_line(
            &v1,
            HostStatus::Ok,
            "localhost",
            "ping",
            &obj(json!({"ping": "pong", "changed": false})),
            false,
        );
        assert_eq!(
            t,
            "\x1b[0;32mok: [localhost] => {\"changed\": false, \"ping\": \"pong\"}\x1b[0m"
        );
        let (e, t) = host_line(
            &Style::default(),
            HostStatus::Failed,
            "h",
            "command",
            &obj(json!({"rc": 1, "failed": true})),
            true,
        );
        assert_eq!(
            (e, t.as_str()),
            (
                "runner_on_failed",
                "fatal: [h]: FAILED! => {\"failed\": true, \"rc\": 1}\r\n...ignoring"
            )
        );
        let adhoc = Style {
            adhoc: true,
            ..Default::default()
        };
        let (_, t) = host_line(
            &adhoc,
            HostStatus::Ok,
            "localhost",
            "ping",
            &obj(json!({"changed": false, "ping": "pong"})),
            false,
        );
        assert_eq!(
            t,
            "localhost | SUCCESS => {\r\n    \"changed\": false,\r\n    \"ping\": \"pong\"\r\n}"
        );
        let (_, t) = host_line(
            &adhoc,
            HostStatus::Failed,
            "localhost",
            "command",
            &obj(json!({"rc": 1, "stdout": "", "stderr": "", "msg": "non-zero return code"})),
            false,
        );
        assert_eq!(t, "localhost | FAILED | rc=1 >>\r\nnon-zero return code");
    }
}

/// C.COLOR_DIFF_ADD / C.COLOR_DIFF_REMOVE / C.COLOR_DIFF_LINES.
const DIFF_ADD: &str = "0;32";
const DIFF_REMOVE: &str = "0;31";
const DIFF_LINES: &str = "0;36";
/// Files longer than this (lines) are not diffed line by line.
const DIFF_MAX_LINES: usize = 5000;

/// The text `--diff` shows for a result's `diff` (the callbacks' `_get_diff`), or None.
pub fn diff_text(style: &Style, diff: &Value) -> Option<String> {
    let list = match diff {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut out = String::new();
    for d in list {
        let Value::Object(d) = d else { continue };
        let (Some(before), Some(after)) = (d.get("before"), d.get("after")) else {
            continue;
        };
        let as_text = |v: &Value| -> String {
            match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => {
                    let mut buf = Vec::new();
                    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                    let _ = serde::Serialize::serialize(&sorted(other), &mut ser);
                    format!("{}\n", String::from_utf8_lossy(&buf))
                }
            }
        };
        let header = |k: &str, word: &str| match d.get(k).and_then(Value::as_str) {
            Some(h) => format!("{word}: {h}"),
            None => word.to_string(),
        };
        let lines = |t: String| -> Vec<String> {
            let mut v: Vec<String> = t.split_inclusive('\n').map(String::from).collect();
            if let Some(last) = v.last_mut()
                && !last.ends_with('\n')
            {
                last.push_str("\n\\ No newline at end of file\n");
            }
            v
        };
        let (a, b) = (lines(as_text(before)), lines(as_text(after)));
        if a.len() > DIFF_MAX_LINES || b.len() > DIFF_MAX_LINES {
            out.push_str(&format!("diff skipped: more than {DIFF_MAX_LINES} lines\n"));
            continue;
        }
        let hunks = unified(&a, &b, 3);
        if hunks.is_empty() {
            continue;
        }
        let paint = |line: &str, color: &str| -> String {
            if style.color {
                line.split('\n')
                    .map(|t| format!("\x1b[{color}m{t}\x1b[0m"))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                line.to_string()
            }
        };
        out.push_str(&paint(
            &format!("--- {}\n", header("before_header", "before")),
            DIFF_REMOVE,
        ));
        out.push_str(&paint(
            &format!("+++ {}\n", header("after_header", "after")),
            DIFF_ADD,
        ));
        for line in hunks {
            let color = match line.as_bytes().first() {
                Some(b'+') => Some(DIFF_ADD),
                Some(b'-') => Some(DIFF_REMOVE),
                Some(b'@') => Some(DIFF_LINES),
                _ => None,
            };
            out.push_str(&match color {
                Some(c) => paint(&line, c),
                None => line,
            });
        }
        out.push('\n');
    }
    let text = out.trim_end_matches(['\n']).replace('\n', "\r\n");
    (!text.is_empty()).then_some(text)
}

/// `difflib.unified_diff(a, b, n=context)` body lines (hunk headers and +/-/space lines).
fn unified(a: &[String], b: &[String], context: usize) -> Vec<String> {
    // Longest common subsequence table, then the edit script.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        Eq(usize, usize),
        Del(usize),
        Ins(usize),
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Eq(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // difflib lists a replaced block's deletions before its insertions.
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Ins(j));
            j += 1;
        }
    }
    // Group changes with `context` lines around them into hunks.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Eq(..)))
        .map(|(k, _)| k)
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(context);
        let end = (k + context + 1).min(ops.len());
        match hunks.last_mut() {
            Some((_, e)) if start <= *e => *e = end.max(*e),
            _ => hunks.push((start, end)),
        }
    }
    let fmt_range = |start: usize, len: usize| -> String {
        let begin = if len == 0 { start } else { start + 1 };
        if len == 1 {
            format!("{begin}")
        } else {
            format!("{begin},{len}")
        }
    };
    let mut out = Vec::new();
    for (s, e) in hunks {
        let slice = &ops[s..e];
        let a_start = slice.iter().find_map(|o| match o {
            Op::Eq(x, _) | Op::Del(x) => Some(*x),
            _ => None,
        });
        let b_start = slice.iter().find_map(|o| match o {
            Op::Eq(_, y) | Op::Ins(y) => Some(*y),
            _ => None,
        });
        let a_len = slice
            .iter()
            .filter(|o| matches!(o, Op::Eq(..) | Op::Del(_)))
            .count();
        let b_len = slice
            .iter()
            .filter(|o| matches!(o, Op::Eq(..) | Op::Ins(_)))
            .count();
        // With no line on a side, difflib counts from the position before the hunk.
        let a_pos = a_start.unwrap_or_else(|| {
            ops[..s]
                .iter()
                .filter(|o| matches!(o, Op::Eq(..) | Op::Del(_)))
                .count()
        });
        let b_pos = b_start.unwrap_or_else(|| {
            ops[..s]
                .iter()
                .filter(|o| matches!(o, Op::Eq(..) | Op::Ins(_)))
                .count()
        });
        out.push(format!(
            "@@ -{} +{} @@\n",
            fmt_range(a_pos, a_len),
            fmt_range(b_pos, b_len)
        ));
        for o in slice {
            out.push(match o {
                Op::Eq(x, _) => format!(" {}", a[*x]),
                Op::Del(x) => format!("-{}", a[*x]),
                Op::Ins(y) => format!("+{}", b[*y]),
            });
        }
    }
    out
}

#[cfg(test)]
mod diff_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unified_diff_like_difflib() {
        let style = Style::default();
        let d = json!({"before": "a\nb\nc\n", "after": "a\nB\nc\nd\n", "before_header": "/f", "after_header": "/f"});
        assert_eq!(
            diff_text(&style, &d).unwrap(),
            "--- before: /f\r\n+++ after: /f\r\n@@ -1,3 +1,4 @@\r\n a\r\n-b\r\n+B\r\n c\r\n+d"
        );
        let d = json!({"before": {"path": "/x", "state": "absent"}, "after": {"path": "/x", "state": "file"}});
        assert_eq!(
            diff_text(&style, &d).unwrap(),
            "--- before\r\n+++ after\r\n@@ -1,4 +1,4 @@\r\n {\r\n     \"path\": \"/x\",\r\n-    \"state\": \"absent\"\r\n+    \"state\": \"file\"\r\n }"
        );
        assert!(diff_text(&style, &json!({"before": "same\n", "after": "same\n"})).is_none());
        let d = json!({"before": "", "after": "new\n"});
        assert_eq!(
            diff_text(&style, &d).unwrap(),
            "--- before\r\n+++ after\r\n@@ -0,0 +1 @@\r\n+new"
        );
        let before: String = "x\n".repeat(10) + "y\n";
        let after: String = "x\n".repeat(10) + "z\n";
        let d = json!({"before": before, "after": after});
        assert_eq!(
            diff_text(&style, &d).unwrap(),
            "--- before\r\n+++ after\r\n@@ -8,4 +8,4 @@\r\n x\r\n x\r\n x\r\n-y\r\n+z"
        );
    }
}
