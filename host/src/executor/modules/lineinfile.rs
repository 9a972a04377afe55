//! `lineinfile`: ensure a line is present or absent, decided on the controller.

use super::copy::put_content;
use super::files::{ModResult, apply_attrs, remote_stat};
use super::{ModuleCtx, bool_arg, failed, obj, quote, str_arg, str_arg_any, text};
use serde_json::{Map, Value, json};

/// `lineinfile`: ensure a line is present (or absent), by exact text, regexp or search string.
pub async fn lineinfile(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let Some(path) = str_arg_any(args, &["path", "dest", "destfile", "name"]) else {
        return Ok(failed("missing required arguments: path"));
    };
    let state = str_arg(args, "state").unwrap_or_else(|| "present".into());
    let line = str_arg(args, "line");
    let regexp = match str_arg_any(args, &["regexp", "regex"]) {
        Some(r) => match regex::Regex::new(&r) {
            Ok(re) => Some(re),
            Err(e) => return Ok(failed(format!("invalid regexp {r:?}: {e}"))),
        },
        None => None,
    };
    let search = str_arg(args, "search_string");
    let backrefs = bool_arg(args, "backrefs", false);
    if state == "present" && line.is_none() {
        return Ok(failed("line is required with state=present"));
    }
    if state == "absent" && regexp.is_none() && search.is_none() && line.is_none() {
        return Ok(failed(
            "one of line, regexp or search_string is required with state=absent",
        ));
    }
    let q = quote(&path);
    let out = ctx
        .sh(
            &format!(
                "if [ -d {q} ]; then exit 3; elif [ -e {q} ]; then cat -- {q}; else exit 2; fi"
            ),
            None,
        )
        .await?;
    let exists = match out.rc {
        0 => true,
        2 => false,
        3 => return Ok(failed(format!("Path {path} is a directory !"))),
        _ => {
            return Ok(failed(format!(
                "cannot read {path}: {}",
                text(&out.stderr).trim()
            )));
        }
    };
    if !exists && (state == "absent" || !bool_arg(args, "create", false)) {
        if state == "absent" {
            return Ok(obj(
                json!({"changed": false, "found": 0, "msg": "file not present"}),
            ));
        }
        let mut m = failed(format!("Destination {path} does not exist !"));
        m.insert("rc".into(), json!(257));
        return Ok(m);
    }
    let original = text(&out.stdout);
    let mut lines: Vec<String> = original.split_inclusive('\n').map(String::from).collect();
    let strip = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let exact = line.clone();
    let matches_target = |l: &str| -> bool {
        let l = strip(l);
        if let Some(re) = &regexp {
            re.is_match(&l)
        } else if let Some(s) = &search {
            l.contains(s.as_str())
        } else {
            exact.as_deref() == Some(l.as_str())
        }
    };
    let (msg, changed) = if state == "absent" {
        let before = lines.len();
        lines.retain(|l| !matches_target(l));
        let n = before - lines.len();
        (
            if n > 0 {
                format!("{n} line(s) removed")
            } else {
                String::new()
            },
            n > 0,
        )
    } else {
        let line = line.unwrap_or_default();
        let first = bool_arg(args, "firstmatch", false);
        let idx = if regexp.is_some() || search.is_some() {
            let mut it = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| matches_target(l))
                .map(|(i, _)| i);
            if first { it.next() } else { it.next_back() }
        } else {
            None
        };
        match idx {
            Some(i) => {
                let new = match (&regexp, backrefs) {
                    (Some(re), true) => re.replace(&strip(&lines[i]), line.as_str()).into_owned(),
                    _ => line.clone(),
                };
                if strip(&lines[i]) != new {
                    lines[i] = format!("{new}\n");
                    ("line replaced".to_string(), true)
                } else {
                    (String::new(), false)
                }
            }
            None if backrefs => (String::new(), false),
            None if lines.iter().any(|l| strip(l) == line) => (String::new(), false),
            None => {
                let pos = insert_position(args, &lines, first);
                match pos {
                    Err(e) => return Ok(failed(e)),
                    Ok(pos) => {
                        if pos > 0 && !lines[pos - 1].ends_with('\n') {
                            lines[pos - 1].push('\n');
                        }
                        lines.insert(pos, format!("{line}\n"));
                        ("line added".to_string(), true)
                    }
                }
            }
        }
    };
    let mut result = obj(json!({"changed": false, "msg": msg, "backup": ""}));
    if ctx.diff {
        result.insert("diff".into(), json!([{"before": original, "after": lines.concat(), "before_header": format!("{path} (content)"), "after_header": format!("{path} (content)")}]));
    }
    if changed || !exists {
        let mut put_args = args.clone();
        put_args.insert("force".into(), json!(true));
        let r = put_content(ctx, &path, lines.concat().as_bytes(), &put_args, None).await?;
        if r.get("failed").and_then(Value::as_bool).unwrap_or(false) {
            return Ok(r);
        }
        if let Some(b) = r.get("backup_file") {
            result.insert("backup".into(), b.clone());
        }
        result.insert("changed".into(), json!(true));
    } else if let Some(f) = tri!(remote_stat(ctx, &path, true, None).await) {
        let c = tri!(apply_attrs(ctx, &path, &f, args, false).await);
        result.insert("changed".into(), json!(c));
    }
    Ok(result)
}

fn insert_position(
    args: &Map<String, Value>,
    lines: &[String],
    first: bool,
) -> Result<usize, String> {
    let find = |pat: &str| -> Result<Option<usize>, String> {
        let re = regex::Regex::new(pat).map_err(|e| format!("invalid regexp {pat:?}: {e}"))?;
        let mut it = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| re.is_match(l.trim_end_matches(['\n', '\r'])))
            .map(|(i, _)| i);
        Ok(if first { it.next() } else { it.next_back() })
    };
    if let Some(before) = str_arg(args, "insertbefore") {
        if before == "BOF" {
            return Ok(0);
        }
        return Ok(find(&before)?.unwrap_or(lines.len()));
    }
    match str_arg(args, "insertafter").as_deref() {
        None | Some("EOF") => Ok(lines.len()),
        Some(after) => Ok(find(after)?.map(|i| i + 1).unwrap_or(lines.len())),
    }
}
