//! `slurp` and `fetch`: remote file content to the script, or into its scratch directory.

use super::files::{ModResult, checksum_bytes};
use super::{
    ModuleCtx, Unreachable, bool_arg, failed, gate, obj, quote, str_arg, str_arg_any, text,
};
use serde_json::{Map, Value, json};

/// Why a remote file could not be read, as slurp tells the cases apart.
#[derive(Clone, Copy, PartialEq)]
enum Unread {
    Missing,
    Unreadable,
    Directory,
}

/// A remote file's bytes (through become when the call uses it), or why it cannot be read
/// (with `None`: another failure, and its stderr).
async fn read_remote(
    src: &str,
    ctx: &ModuleCtx<'_>,
) -> Result<Result<Vec<u8>, (Option<Unread>, String)>, Unreachable> {
    let q = quote(src);
    let out = ctx
        .sh(
            &format!(
                "if [ ! -e {q} ]; then exit 2; fi; if [ -d {q} ]; then exit 4; fi; \
                 if [ ! -r {q} ]; then exit 3; fi; cat -- {q}"
            ),
            None,
        )
        .await?;
    Ok(match out.rc {
        0 => Ok(out.stdout),
        2 => Err((Some(Unread::Missing), String::new())),
        3 => Err((Some(Unread::Unreadable), String::new())),
        4 => Err((Some(Unread::Directory), String::new())),
        _ => Err((None, text(&out.stderr).trim().to_string())),
    })
}

/// slurp's message for a file it cannot read, as the EE's version words it.
fn slurp_message(why: Unread, src: &str, core: Option<&crate::executor::ansible::Core>) -> String {
    let msgs = match core {
        Some(core) => core.slurp_msgs.clone(),
        None => crate::executor::ansible::Core::default_slurp_msgs(),
    };
    let i = match why {
        Unread::Missing => 0,
        Unread::Unreadable => 1,
        Unread::Directory => 2,
    };
    format!("{}{src}", msgs[i])
}

/// `slurp`: a remote file's content, base64-encoded.
pub async fn slurp(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    use base64::Engine;
    let Some(src) = str_arg_any(args, &["src", "path"]) else {
        return Ok(failed("missing required arguments: src"));
    };
    let data = match read_remote(&src, ctx).await? {
        Ok(data) => data,
        Err((Some(why), _)) => {
            return Ok(failed(slurp_message(why, &src, ctx.ansible.core().await)));
        }
        Err((None, err)) => return Ok(failed(format!("Unable to slurp file: {err}"))),
    };
    Ok(obj(json!({
        "changed": false, "content": base64::engine::general_purpose::STANDARD.encode(&data),
        "encoding": "base64", "source": src,
    })))
}

/// `fetch`: copy a remote file to the controller (into the job's scratch directory), step by
/// step as ansible-core's fetch action plugin does it, with its messages and result keys: the
/// source read once (as the plugin's slurp path does), what a missing, unreadable or directory
/// source reports with and without become, the flat/tree destination, and the checksums.
pub async fn fetch(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let core = ctx.ansible.core().await;
    // The plugin's own results (not its exceptions, which the helper words) as TaskExecutor
    // of this version passes them on.
    let reported = |r: Map<String, Value>| match core {
        Some(c) => gate::as_reported("fetch", &Map::new(), r, c, ctx.no_log),
        None => r,
    };
    if ctx.check_mode {
        let msg = "check mode not (yet) supported for this module";
        return Ok(ctx.ansible.action_raised("skip", msg, ctx, true).await);
    }
    let not_text = |k: &str| args.get(k).is_some_and(|v| !v.is_string() && !v.is_null());
    let msg = if str_arg(args, "src").is_none() || str_arg(args, "dest").is_none() {
        Some("src and dest are required")
    } else if not_text("dest") {
        Some("Invalid type supplied for dest option, it must be a string")
    } else if not_text("src") {
        Some("Invalid type supplied for source option, it must be a string")
    } else {
        None
    };
    let (Some(src), Some(dest), None) = (str_arg(args, "src"), str_arg(args, "dest"), msg) else {
        let msg = msg.unwrap_or("src and dest are required");
        return Ok(ctx.ansible.action_raised("fail", msg, ctx, true).await);
    };
    let fail_on_missing = bool_arg(args, "fail_on_missing", true);
    let validate_checksum = bool_arg(args, "validate_checksum", true);
    let src = expand_user(&src, ctx).await?;
    let data = match read_remote(&src, ctx).await? {
        Ok(data) => data,
        // With become the plugin reads through the slurp module: its answer (with what the
        // module warned, e.g. of a become user's unusable home) is the one to take over.
        Err((Some(_), _)) if ctx.become_.is_some() && core.is_some() => {
            let slurp_args = obj(json!({ "src": src }));
            let slurped = ctx
                .ansible
                .run("ansible.legacy.slurp", &slurp_args, ctx, None)
                .await?;
            let answer = from_slurp(slurped, &src, fail_on_missing, core);
            // slurp's failure was reported by this version already; the plugin's own ok is not.
            return Ok(if fail_on_missing {
                answer
            } else {
                reported(answer)
            });
        }
        Err((Some(why), _)) => {
            return Ok(reported(unreadable(why, &src, fail_on_missing, ctx, core)));
        }
        Err((None, err)) => return Ok(reported(failed(format!("cannot read {src}: {err}")))),
    };
    let remote_checksum = checksum_bytes(&data);
    let target = if bool_arg(args, "flat", false) {
        let is_dir = |p: &str| ctx.local.writable(p).is_ok_and(|l| l.is_dir());
        if !dest.ends_with('/') {
            if is_dir(&dest) {
                let msg = "dest is an existing directory, use a trailing slash if you want to \
                           fetch src into that directory";
                return Ok(ctx.ansible.action_raised("fail", msg, ctx, true).await);
            }
            dest.clone()
        } else {
            let base = src.rsplit('/').next().unwrap_or_default();
            let joined = format!("{dest}{base}");
            if core.is_none_or(|c| c.fetch_refuses_dir_dest) && is_dir(&joined) {
                let msg = format!(
                    "calculated dest '{joined}' is an existing directory, use another path that \
                     does not point to an existing directory"
                );
                return Ok(ctx.ansible.action_raised("fail", &msg, ctx, true).await);
            }
            joined
        }
    } else {
        format!("{}/{}/{}", dest.trim_end_matches('/'), ctx.host, src)
    };
    let local = match ctx.local.writable(&target) {
        Ok(p) => p,
        Err(e) => return Ok(reported(failed(e))),
    };
    // Each directory made inside the one above it, beneath the scratch directory: a link
    // there leading out is refused, not followed.
    if let Err(e) = local.create_parents() {
        crate::debugln!(
            "fetch: cannot make the directories of {}: {e}",
            local.path().display()
        );
    }
    let dest_text = local.path().to_string_lossy().into_owned();
    let existing = local.read().ok();
    if existing.as_deref().map(checksum_bytes).as_deref() == Some(remote_checksum.as_str()) {
        return Ok(reported(obj(json!({
            "changed": false, "md5sum": md5_hex(existing.as_deref().unwrap_or_default()),
            "file": src, "dest": dest_text, "checksum": remote_checksum,
        }))));
    }
    if let Err(e) = local.write(&data) {
        crate::debugln!("fetch: cannot write {dest_text}: {e}");
        return Ok(ctx
            .ansible
            .action_raised("fail", "Failed to fetch the file.", ctx, true)
            .await);
    }
    let written = local.read().unwrap_or_default();
    let new_checksum = checksum_bytes(&written);
    let mut result = obj(json!({
        "changed": true, "md5sum": md5_hex(&written), "file": src, "dest": dest_text,
        "remote_md5sum": null, "checksum": new_checksum, "remote_checksum": remote_checksum,
    }));
    if validate_checksum && new_checksum != remote_checksum {
        result.remove("changed");
        result.insert("failed".into(), Value::Bool(true));
        result.insert("msg".into(), Value::String("checksum mismatch".into()));
    } else if core.is_some_and(|c| !c.fetch_names_file) {
        result.remove("file");
    }
    Ok(reported(result))
}

/// The fetch plugin's words for a source that does not exist.
const MISSING: &str = "the remote file does not exist, not transferring, ignored";
/// The fetch plugin's words for a source that is a directory.
const IS_DIR: &str = "remote file is a directory, fetch cannot work on directories";

/// What fetch reports for a source it cannot read. Without become the plugin stats the source
/// first and answers a directory itself; otherwise (and for the rest) slurp's failure is the
/// answer, its message replaced for a missing file or a directory, or, with
/// `fail_on_missing=no`, an ok result naming the file.
fn unreadable(
    why: Unread,
    src: &str,
    fail_on_missing: bool,
    ctx: &ModuleCtx<'_>,
    core: Option<&crate::executor::ansible::Core>,
) -> Map<String, Value> {
    if why == Unread::Directory && ctx.become_.is_none() {
        return if fail_on_missing {
            obj(json!({"failed": true, "changed": false, "msg": IS_DIR}))
        } else {
            obj(json!({"msg": format!("{IS_DIR}, not transferring, ignored"), "changed": false}))
        };
    }
    let replaced = match why {
        Unread::Missing => Some(MISSING),
        Unread::Directory => Some(IS_DIR),
        Unread::Unreadable => None,
    };
    if !fail_on_missing {
        let mut r = obj(json!({"file": src, "changed": false}));
        if let Some(m) = replaced {
            r.insert("msg".into(), Value::String(m.into()));
        }
        return r;
    }
    // slurp's failure, as the plugin takes it over.
    let msg = replaced.map_or_else(|| slurp_message(why, src, core), String::from);
    let mut r = failed(msg);
    let slurp_args = obj(json!({ "src": src }));
    if let Some(c) = core.filter(|c| c.injects_invocation)
        && let Some(inv) = gate::invocation("slurp", &slurp_args, c)
    {
        r.insert("invocation".into(), inv);
    }
    r
}

/// The plugin's answer from slurp's failed result: taken over whole, or with
/// `fail_on_missing=no` only the file's name (and, from 2.21, what the module warned); a
/// missing file or a directory worded as the plugin words them.
fn from_slurp(
    slurped: Map<String, Value>,
    src: &str,
    fail_on_missing: bool,
    core: Option<&crate::executor::ansible::Core>,
) -> Map<String, Value> {
    let said = slurped.get("msg").and_then(Value::as_str).unwrap_or("");
    // From 2.19 the plugin compares slurp's message in lower case.
    let said = if core.is_some_and(|c| c.version >= (2, 19)) {
        said.to_lowercase()
    } else {
        said.to_string()
    };
    let replaced = if said.contains("not found") {
        Some(MISSING)
    } else if said.starts_with("source is a directory") {
        Some(IS_DIR)
    } else {
        None
    };
    let mut r = if fail_on_missing {
        slurped.clone()
    } else {
        let mut r = obj(json!({"file": src, "changed": false}));
        if core.is_some_and(|c| c.version >= (2, 21)) {
            for key in ["warnings", "deprecations"] {
                if let Some(v) = slurped.get(key) {
                    r.insert(key.into(), v.clone());
                }
            }
        }
        r
    };
    if let Some(m) = replaced {
        r.insert("msg".into(), Value::String(m.into()));
    }
    r
}

/// A leading `~` or `~user` of a remote path, expanded on the host as Ansible's
/// `_remote_expand_user` does (plain `~` is the become user's home when the call becomes).
async fn expand_user(path: &str, ctx: &ModuleCtx<'_>) -> Result<String, Unreachable> {
    let (head, rest) = path.split_once('/').unwrap_or((path, ""));
    let Some(user) = head.strip_prefix('~') else {
        return Ok(path.to_string());
    };
    let user = match &ctx.become_ {
        Some(b) if user.is_empty() => b.user.as_str(),
        _ => user,
    };
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Ok(path.to_string());
    }
    let out = ctx.sh(&format!("echo ~{user}"), None).await?;
    let home = text(&out.stdout).trim().to_string();
    if out.rc != 0 || home.is_empty() || home.starts_with('~') {
        return Ok(path.to_string());
    }
    Ok(if rest.is_empty() {
        home
    } else {
        format!("{}/{rest}", home.trim_end_matches('/'))
    })
}

/// An MD5 digest in hex, as fetch reports it beside the SHA-1 checksum.
fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::compute(data))
}
