//! `slurp` and `fetch`: remote file content to the script, or into its scratch directory.

use super::files::{ModResult, checksum_bytes};
use super::{ModuleCtx, bool_arg, failed, obj, quote, str_arg, str_arg_any, text};
use serde_json::{Map, Value, json};
use std::path::Path;

/// `slurp`: a remote file's content, base64-encoded.
pub async fn slurp(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    use base64::Engine;
    let Some(src) = str_arg_any(args, &["src", "path"]) else {
        return Ok(failed("missing required arguments: src"));
    };
    let q = quote(&src);
    let out = ctx.sh(&format!("if [ ! -e {q} ]; then exit 2; fi; if [ -d {q} ]; then exit 4; fi; if [ ! -r {q} ]; then exit 3; fi; cat -- {q}"), None).await?;
    if (2..=4).contains(&out.rc) {
        // slurp's own messages, as the EE's version words them.
        let msgs = match ctx.ansible.core().await {
            Some(core) => core.slurp_msgs.clone(),
            None => crate::executor::ansible::Core::default_slurp_msgs(),
        };
        return Ok(failed(format!("{}{src}", msgs[out.rc as usize - 2])));
    }
    if out.rc != 0 {
        return Ok(failed(format!(
            "Unable to slurp file: {}",
            text(&out.stderr).trim()
        )));
    }
    Ok(obj(json!({
        "changed": false, "content": base64::engine::general_purpose::STANDARD.encode(&out.stdout),
        "encoding": "base64", "source": src,
    })))
}

/// `fetch`: copy a remote file to the controller (into the job's scratch directory).
pub async fn fetch(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let (Some(src), Some(dest)) = (str_arg(args, "src"), str_arg(args, "dest")) else {
        return Ok(failed("missing required arguments: src, dest"));
    };
    let q = quote(&src);
    let out = ctx
        .sh(
            &format!(
                "if [ ! -e {q} ]; then exit 2; fi; if [ -d {q} ]; then exit 3; fi; cat -- {q}"
            ),
            None,
        )
        .await?;
    match out.rc {
        0 => {}
        2 => {
            let msg = "the remote file does not exist, not transferring, ignored";
            return Ok(if bool_arg(args, "fail_on_missing", true) {
                failed(msg)
            } else {
                obj(json!({"changed": false, "file": src, "msg": msg}))
            });
        }
        3 => {
            return Ok(failed(
                "remote file is a directory, fetch cannot work on directories",
            ));
        }
        _ => {
            return Ok(failed(format!(
                "cannot read {src}: {}",
                text(&out.stderr).trim()
            )));
        }
    }
    let flat = bool_arg(args, "flat", false);
    let target = if flat {
        if dest.ends_with('/') {
            format!(
                "{dest}{}",
                Path::new(&src)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else {
            dest.clone()
        }
    } else {
        format!(
            "{}/{}/{}",
            dest.trim_end_matches('/'),
            ctx.host,
            src.trim_start_matches('/')
        )
    };
    let sum = checksum_bytes(&out.stdout);
    // Check the destination before creating any directory for it.
    if let Err(e) = ctx.local.writable_lexically(&target) {
        return Ok(failed(e));
    }
    if let Some(dir) = Path::new(&target).parent()
        && !ctx.check_mode
    {
        let _ = std::fs::create_dir_all(ctx.local.write_base().join(dir));
    }
    let local = match ctx.local.writable(&target) {
        Ok(p) => p,
        Err(e) => return Ok(failed(e)),
    };
    let existing = std::fs::read(&local).ok().map(|d| checksum_bytes(&d));
    let changed = existing.as_deref() != Some(sum.as_str());
    if changed
        && !ctx.check_mode
        && let Err(e) = std::fs::write(&local, &out.stdout)
    {
        return Ok(failed(format!("cannot write {}: {e}", local.display())));
    }
    Ok(obj(json!({
        "changed": changed, "checksum": sum, "dest": local.to_string_lossy(),
        "remote_checksum": sum, "remote_md5sum": null,
    })))
}
