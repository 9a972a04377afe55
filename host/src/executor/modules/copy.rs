//! `copy`: content, files, directories as tar, checksum idempotence, backup.

use super::files::{Facts, Kind, ModResult, apply_attrs, checksum_bytes, path_info, remote_stat};
use super::{LocalPath, ModuleCtx, bool_arg, check_rc, failed, obj, quote, str_arg, text};
use crate::beneath::Kind as Entry;
use crate::executor::connection::Unreachable;
use serde_json::{Map, Value, json};
use std::path::Path;

/// Where a copy lands: `dest/` or an existing directory gets the source's file name.
pub(super) async fn copy_dest(
    ctx: &ModuleCtx<'_>,
    dest: &str,
    name: Option<&str>,
) -> Result<Result<String, Map<String, Value>>, Unreachable> {
    let is_dir = dest.ends_with('/')
        || matches!(tri_stat(ctx, dest).await?, Ok(Some(f)) if f.kind == Kind::Dir);
    if !is_dir {
        return Ok(Ok(dest.to_string()));
    }
    match name {
        Some(n) => Ok(Ok(format!("{}/{n}", dest.trim_end_matches('/')))),
        None => Ok(Err(failed(format!(
            "can not use content with a dir as dest: {dest}"
        )))),
    }
}

async fn tri_stat(
    ctx: &ModuleCtx<'_>,
    path: &str,
) -> Result<Result<Option<Facts>, Map<String, Value>>, Unreachable> {
    remote_stat(ctx, path, true, None).await
}

/// Write `data` to `dest` on the target (atomically, keeping an existing file's owner and mode);
/// honours force, backup, check mode; then mode/owner/group. Returns the module result.
pub(super) async fn put_content(
    ctx: &ModuleCtx<'_>,
    dest: &str,
    data: &[u8],
    args: &Map<String, Value>,
    src_shown: Option<&str>,
) -> ModResult {
    let before = tri!(remote_stat(ctx, dest, true, Some("sha1")).await);
    if let Some(f) = &before
        && f.kind == Kind::Dir
    {
        return Ok(failed(format!("dest {dest} is a directory")));
    }
    let sum = checksum_bytes(data);
    let force = bool_arg(args, "force", true);
    let same = before.as_ref().and_then(|f| f.checksum.clone()) == Some(sum.clone());
    let write = !same && (before.is_none() || force);
    let mut result = obj(json!({"changed": false, "dest": dest, "checksum": sum}));
    if let Some(s) = src_shown {
        result.insert("src".into(), json!(s));
    }
    if ctx.diff && !same && data.len() < 64 * 1024 && std::str::from_utf8(data).is_ok() {
        let old = if let Some(f) = &before
            && f.size < 64 * 1024
        {
            let out = ctx.sh(&format!("cat -- {}", quote(dest)), None).await?;
            text(&out.stdout)
        } else {
            String::new()
        };
        result.insert(
            "diff".into(),
            {
                // As Ansible's _get_diff_data: a before header only for an existing file; the
                // after header is the source, or the destination for inline content.
                let mut d = obj(json!({"before": old, "after": String::from_utf8_lossy(data), "after_header": src_shown.unwrap_or(dest)}));
                if before.is_some() {
                    d.insert("before_header".into(), json!(dest));
                }
                json!([d])
            },
        );
    }
    let mut changed = false;
    if write {
        changed = true;
        if !ctx.check_mode {
            let q = quote(dest);
            let backup = if before.is_some() && bool_arg(args, "backup", false) {
                let stamp = chrono::Local::now()
                    .format("%Y-%m-%d@%H:%M:%S~")
                    .to_string();
                let b = format!("{dest}.{}.{stamp}", std::process::id());
                result.insert("backup_file".into(), json!(b));
                format!("cp -p -- {q} {} || exit 1\n", quote(&b))
            } else {
                String::new()
            };
            let script = format!(
                "{backup}d={q}; t=$(mktemp \"$(dirname -- \"$d\")/.ftl2tmp.XXXXXX\") || exit 1\n\
                 cat > \"$t\" || {{ rm -f \"$t\"; exit 1; }}\n\
                 if [ -e \"$d\" ]; then chmod --reference=\"$d\" \"$t\" 2>/dev/null; chown --reference=\"$d\" \"$t\" 2>/dev/null; \
                 else chmod \"$(printf '%o' $((0666 & ~$(umask))))\" \"$t\"; fi\n\
                 mv -f -- \"$t\" \"$d\""
            );
            let out = ctx.sh(&script, Some(data)).await?;
            if let Err(m) = check_rc(&out, &format!("cannot write {dest}")) {
                return Ok(m);
            }
        }
    }
    let after = if ctx.check_mode && before.is_none() {
        None
    } else {
        tri!(remote_stat(ctx, dest, true, None).await)
    };
    if let Some(f) = after {
        let attrs_changed = tri!(apply_attrs(ctx, dest, &f, args, false).await);
        changed |= attrs_changed;
        let f = if ctx.check_mode || !attrs_changed {
            f
        } else {
            tri!(remote_stat(ctx, dest, true, None).await).unwrap_or(f)
        };
        path_info(&mut result, dest, &f);
        result.remove("path");
        result.insert("state".into(), json!("file"));
    }
    result.insert("changed".into(), json!(changed));
    Ok(result)
}

/// `copy`: content or a local file/directory (from the script's directory or scratch) to `dest`.
pub async fn copy(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let Some(dest) = str_arg(args, "dest") else {
        return Ok(failed("missing required arguments: dest"));
    };
    if let Some(content) = args.get("content") {
        let data = match content {
            Value::String(s) => s.clone().into_bytes(),
            other => crate::pyjson::to_vec(other),
        };
        let dest = tri!(copy_dest(ctx, &dest, None).await);
        return put_content(ctx, &dest, &data, args, None).await;
    }
    let Some(src) = str_arg(args, "src") else {
        return Ok(failed("src (or content) is required"));
    };
    if bool_arg(args, "remote_src", false) {
        let out = ctx.sh(&format!("cat -- {}", quote(&src)), None).await?;
        if let Err(m) = check_rc(&out, &format!("cannot read {src} on the remote host")) {
            return Ok(m);
        }
        let name = Path::new(&src)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let dest = tri!(copy_dest(ctx, &dest, name.as_deref()).await);
        return put_content(ctx, &dest, &out.stdout, args, Some(&src)).await;
    }
    let local = match ctx.local.readable(&ctx.local.find_needle("files", &src)) {
        Ok(p) => p,
        Err(e) => return Ok(failed(format!("Could not find or access '{src}': {e}"))),
    };
    if local.is_dir() {
        return copy_dir(ctx, &local, src.ends_with('/'), &dest, args).await;
    }
    let data = match local.read() {
        Ok(d) => d,
        Err(e) => return Ok(failed(format!("Could not read '{src}': {e}"))),
    };
    let name = local.file_name().to_string_lossy().into_owned();
    let name = (!name.is_empty()).then_some(name);
    let dest = tri!(copy_dest(ctx, &dest, name.as_deref()).await);
    put_content(
        ctx,
        &dest,
        &data,
        args,
        Some(&local.path().to_string_lossy()),
    )
    .await
}

/// Copy a local directory: only files whose checksum differs travel, as one tar stream.
async fn copy_dir(
    ctx: &ModuleCtx<'_>,
    local: &LocalPath,
    contents_only: bool,
    dest: &str,
    args: &Map<String, Value>,
) -> ModResult {
    let base = if contents_only {
        dest.trim_end_matches('/').to_string()
    } else {
        format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            local.file_name().to_string_lossy()
        )
    };
    let mut files: Vec<(LocalPath, String)> = Vec::new();
    collect_files(local, Path::new(""), &mut files);
    let q = quote(&base);
    let out = ctx
        .sh(
            &format!(
                "[ -d {q} ] && cd {q} && find . -type f -exec sha1sum {{}} + 2>/dev/null; exit 0"
            ),
            None,
        )
        .await?;
    let remote: std::collections::HashMap<String, String> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once("  ")
                .map(|(s, p)| (p.trim_start_matches("./").to_string(), s.to_string()))
        })
        .collect();
    let mut changed_files = Vec::new();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, rel) in &files {
        let Ok(data) = path.read() else {
            continue;
        };
        if remote.get(rel) == Some(&checksum_bytes(&data)) {
            continue;
        }
        changed_files.push(rel.clone());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        let mode = path
            .metadata()
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0o644);
        header.set_mode(mode);
        header.set_mtime(chrono::Utc::now().timestamp() as u64);
        if builder
            .append_data(&mut header, rel, data.as_slice())
            .is_err()
        {
            return Ok(failed(format!("cannot pack {}", path.path().display())));
        }
    }
    let tarball = builder.into_inner().unwrap_or_default();
    let mut result = obj(json!({"changed": !changed_files.is_empty(), "dest": base}));
    if !changed_files.is_empty() && !ctx.check_mode {
        let out = ctx
            .sh(
                &format!("mkdir -p -- {q} && tar -x -o -f - -C {q}"),
                Some(&tarball),
            )
            .await?;
        if let Err(m) = check_rc(&out, &format!("cannot unpack into {base}")) {
            return Ok(m);
        }
    }
    if let Some(f) = tri!(remote_stat(ctx, &base, true, None).await)
        && (args.contains_key("mode") || args.contains_key("owner") || args.contains_key("group"))
    {
        let changed = tri!(apply_attrs(ctx, &base, &f, args, true).await);
        if changed {
            result.insert("changed".into(), json!(true));
        }
    }
    result.insert("files_changed".into(), json!(changed_files));
    Ok(result)
}

/// The regular files below `dir` (links are not followed: a link is not a file of the tree),
/// each with its path relative to the tree, sorted.
fn collect_files(dir: &LocalPath, rel: &Path, out: &mut Vec<(LocalPath, String)>) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    for (name, kind) in entries {
        let r = rel.join(&name);
        match kind {
            Entry::Dir => collect_files(&dir.join(&name), &r, out),
            Entry::File => out.push((dir.join(&name), r.to_string_lossy().into_owned())),
            _ => {}
        }
    }
}
