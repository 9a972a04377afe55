//! File modules: `file`, `copy`, `template`, `stat`, `slurp`, `fetch`, `lineinfile`.
//!
//! The target needs only a POSIX shell and coreutils: file facts come from `stat -c`, content
//! travels over the command's stdin, and every change is decided here, on the controller, so
//! check mode never touches the target.

use super::{
    ModuleCtx, bool_arg, check_rc, failed, mode_arg, obj, quote, str_arg, str_arg_any, text,
};
use crate::executor::connection::Unreachable;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};

type ModResult = Result<Map<String, Value>, Unreachable>;

/// Hex sha1 of bytes, Ansible's file checksum.
pub fn checksum_bytes(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kind of file at a path.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    File,
    Dir,
    Link,
    Other(String),
}

/// What `stat -c` tells about a path on the target.
#[derive(Debug, Clone)]
struct Facts {
    kind: Kind,
    mode: u32,
    owner: String,
    group: String,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: f64,
    atime: f64,
    ctime: f64,
    inode: u64,
    nlink: u64,
    link_target: Option<String>,
    checksum: Option<String>,
}

const STAT_FMT: &str = "%F|%a|%U|%G|%u|%g|%s|%.9Y|%.9X|%.9Z|%i|%h";

/// Stat `path` on the target (following links if `follow`), with its sha1 when `checksum`.
async fn remote_stat(
    ctx: &ModuleCtx<'_>,
    path: &str,
    follow: bool,
    checksum: Option<&str>,
) -> Result<Result<Option<Facts>, Map<String, Value>>, Unreachable> {
    let q = quote(path);
    let l = if follow { "-L " } else { "" };
    let sum = match checksum {
        Some(alg) => format!("[ -f {q} ] && echo \"SUM|$({alg}sum < {q} | cut -d' ' -f1)\"; "),
        None => String::new(),
    };
    let script = format!(
        "if [ -e {q} ] || [ -L {q} ]; then stat {l}-c '{STAT_FMT}' -- {q} || exit 3; \
         [ -L {q} ] && echo \"LINK|$(readlink -- {q})\"; {sum}exit 0; else echo ABSENT; fi"
    );
    let out = ctx.sh(&script, None).await?;
    if let Err(m) = check_rc(&out, &format!("cannot stat {path}")) {
        return Ok(Err(m));
    }
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let Some(first) = lines.next() else {
        return Ok(Err(failed(format!("cannot stat {path}: no output"))));
    };
    if first == "ABSENT" {
        return Ok(Ok(None));
    }
    let f: Vec<&str> = first.split('|').collect();
    if f.len() < 12 {
        return Ok(Err(failed(format!(
            "cannot stat {path}: unexpected output {first:?}"
        ))));
    }
    let kind = match f[0] {
        "regular file" | "regular empty file" => Kind::File,
        "directory" => Kind::Dir,
        "symbolic link" => Kind::Link,
        other => Kind::Other(other.to_string()),
    };
    let num = |s: &str| s.parse::<u64>().unwrap_or(0);
    let flt = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let mut facts = Facts {
        kind,
        mode: u32::from_str_radix(f[1], 8).unwrap_or(0),
        owner: f[2].to_string(),
        group: f[3].to_string(),
        uid: num(f[4]),
        gid: num(f[5]),
        size: num(f[6]),
        mtime: flt(f[7]),
        atime: flt(f[8]),
        ctime: flt(f[9]),
        inode: num(f[10]),
        nlink: num(f[11]),
        link_target: None,
        checksum: None,
    };
    for line in lines {
        if let Some(t) = line.strip_prefix("LINK|") {
            facts.link_target = Some(t.to_string());
        } else if let Some(s) = line.strip_prefix("SUM|") {
            facts.checksum = Some(s.to_string());
        }
    }
    Ok(Ok(Some(facts)))
}

fn state_word(k: &Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Link => "link",
        Kind::Other(_) => "file",
    }
}

/// Path info as Ansible's modules add it to results.
fn path_info(m: &mut Map<String, Value>, path: &str, f: &Facts) {
    m.insert("path".into(), json!(path));
    m.insert("state".into(), json!(state_word(&f.kind)));
    m.insert("mode".into(), json!(format!("{:04o}", f.mode)));
    m.insert("owner".into(), json!(f.owner));
    m.insert("group".into(), json!(f.group));
    m.insert("uid".into(), json!(f.uid));
    m.insert("gid".into(), json!(f.gid));
    m.insert("size".into(), json!(f.size));
    if let Some(t) = &f.link_target {
        m.insert("src".into(), json!(t));
    }
}

/// Apply a symbolic mode (`u+rwx,g-w,o=r,a+X`) to `current`, as chmod would.
fn apply_symbolic(current: u32, spec: &str, is_dir: bool) -> Option<u32> {
    let mut mode = current;
    for clause in spec.split(',') {
        let ops_at = clause.find(['+', '-', '='])?;
        let (who, rest) = clause.split_at(ops_at);
        let who_mask = if who.is_empty() || who.contains('a') {
            0o7777
        } else {
            let mut m = 0;
            if who.contains('u') {
                m |= 0o4700;
            }
            if who.contains('g') {
                m |= 0o2070;
            }
            if who.contains('o') {
                m |= 0o1007;
            }
            m
        };
        let mut chars = rest.chars().peekable();
        while let Some(op) = chars.next() {
            let mut perm = 0u32;
            while let Some(&c) = chars.peek() {
                if "+-=".contains(c) {
                    break;
                }
                chars.next();
                perm |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    'X' => 0,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return None,
                };
            }
            let bits = perm & who_mask;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                '=' => mode = (mode & !(who_mask & 0o7777)) | bits,
                _ => return None,
            }
        }
    }
    Some(mode & 0o7777)
}

/// The mode a `mode=` argument asks for, given the current one.
fn wanted_mode(spec: &str, current: u32, is_dir: bool) -> Option<u32> {
    if spec.chars().all(|c| c.is_ascii_digit()) {
        u32::from_str_radix(spec, 8).ok()
    } else {
        apply_symbolic(current, spec, is_dir)
    }
}

/// Bring mode/owner/group of an existing path in line; returns whether anything changed.
async fn apply_attrs(
    ctx: &ModuleCtx<'_>,
    path: &str,
    facts: &Facts,
    args: &Map<String, Value>,
    recurse: bool,
) -> Result<Result<bool, Map<String, Value>>, Unreachable> {
    let mode = match mode_arg(args) {
        Ok(m) => m,
        Err(e) => return Ok(Err(failed(e))),
    };
    let owner = str_arg(args, "owner");
    let group = str_arg(args, "group");
    let mut cmds = Vec::new();
    let mut changed = false;
    let q = quote(path);
    let r = if recurse { "-R " } else { "" };
    let h = if facts.kind == Kind::Link { "-h " } else { "" };
    if let Some(spec) = mode.as_deref().filter(|m| *m != "preserve") {
        let want = wanted_mode(spec, facts.mode, facts.kind == Kind::Dir);
        if want != Some(facts.mode) || recurse {
            if want != Some(facts.mode) {
                changed = true;
            }
            if facts.kind != Kind::Link {
                cmds.push(format!("chmod {r}{} {q}", quote(spec)));
            }
        }
    }
    if let Some(o) = &owner
        && (o != &facts.owner && o != &facts.uid.to_string() || recurse)
    {
        changed |= o != &facts.owner && o != &facts.uid.to_string();
        cmds.push(format!("chown {h}{r}{} {q}", quote(o)));
    }
    if let Some(g) = &group
        && (g != &facts.group && g != &facts.gid.to_string() || recurse)
    {
        changed |= g != &facts.group && g != &facts.gid.to_string();
        cmds.push(format!("chgrp {h}{r}{} {q}", quote(g)));
    }
    if cmds.is_empty() || ctx.check_mode {
        return Ok(Ok(changed));
    }
    // With recurse, contents may differ even when the top matches: report what chmod/chown did.
    let script = if recurse {
        format!(
            "before=$(find {q} -exec stat -c '%a%U%G' {{}} + | cksum); {} && after=$(find {q} -exec stat -c '%a%U%G' {{}} + | cksum); [ \"$before\" = \"$after\" ] || echo CHANGED",
            cmds.join(" && ")
        )
    } else {
        cmds.join(" && ")
    };
    let out = ctx.sh(&script, None).await?;
    if let Err(m) = check_rc(&out, &format!("cannot set attributes of {path}")) {
        return Ok(Err(m));
    }
    Ok(Ok(changed || text(&out.stdout).contains("CHANGED")))
}

macro_rules! tri {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(m) => return Ok(m),
        }
    };
}

/// `file`: states file, directory, touch, absent, link, hard; mode/owner/group; recurse.
pub async fn file(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let Some(path) = str_arg_any(args, &["path", "dest", "name"]) else {
        return Ok(failed("missing required arguments: path"));
    };
    let follow = bool_arg(args, "follow", true);
    let current = tri!(remote_stat(ctx, &path, false, None).await);
    let state = str_arg(args, "state").unwrap_or_else(|| match &current {
        Some(f) if f.kind == Kind::Dir => "directory".into(),
        Some(f) if f.kind == Kind::Link && !follow => "link".into(),
        _ => "file".into(),
    });
    let q = quote(&path);
    let mut result = obj(json!({"changed": false, "path": path}));
    let before_state = current
        .as_ref()
        .map(|f| state_word(&f.kind))
        .unwrap_or("absent");
    let mut changed = false;
    match state.as_str() {
        "absent" => {
            if current.is_some() {
                changed = true;
                if !ctx.check_mode {
                    let out = ctx.sh(&format!("rm -rf -- {q}"), None).await?;
                    if let Err(m) = check_rc(&out, &format!("cannot remove {path}")) {
                        return Ok(m);
                    }
                }
            }
            result.insert("state".into(), json!("absent"));
            result.insert("changed".into(), json!(changed));
            add_diff(&mut result, ctx, &path, before_state, "absent");
            return Ok(result);
        }
        "directory" => match &current {
            Some(f) if f.kind == Kind::Dir => {}
            Some(f) if f.kind == Kind::Link && follow => {}
            Some(f) => {
                return Ok(failed(format!(
                    "{path} already exists as a {}",
                    state_word(&f.kind)
                )));
            }
            None => {
                changed = true;
                if !ctx.check_mode {
                    let out = ctx.sh(&format!("mkdir -p -- {q}"), None).await?;
                    if let Err(m) = check_rc(&out, &format!("cannot create directory {path}")) {
                        return Ok(m);
                    }
                }
            }
        },
        "file" => match &current {
            None => {
                let mut m = failed(format!("file ({path}) is absent, cannot continue"));
                m.insert("path".into(), json!(path));
                m.insert("state".into(), json!("absent"));
                return Ok(m);
            }
            Some(f) if f.kind == Kind::Dir => {
                return Ok(failed(format!(
                    "{path} is a directory, cannot continue (use state=directory)"
                )));
            }
            _ => {}
        },
        "touch" => {
            changed = true;
            if let Some(f) = &current
                && f.kind == Kind::Dir
                && false
            {
                unreachable!()
            }
            if !ctx.check_mode {
                let out = ctx.sh(&format!("touch -- {q}"), None).await?;
                if let Err(m) = check_rc(&out, &format!("cannot touch {path}")) {
                    return Ok(m);
                }
            }
        }
        "link" | "hard" => {
            let Some(src) = str_arg(args, "src") else {
                return Ok(failed(format!(
                    "src is required for creating the link {path}"
                )));
            };
            let force = bool_arg(args, "force", false);
            let hard = state == "hard";
            let up_to_date = match &current {
                Some(f) if !hard && f.kind == Kind::Link => {
                    f.link_target.as_deref() == Some(src.as_str())
                }
                Some(f) if hard => {
                    let src_facts = tri!(remote_stat(ctx, &src, false, None).await);
                    match src_facts {
                        Some(sf) => sf.inode == f.inode,
                        None => {
                            return Ok(failed(format!(
                                "src file does not exist, use \"force=yes\" if you really want to create the link: {src}"
                            )));
                        }
                    }
                }
                Some(f) if f.kind == Kind::Dir && !force => {
                    return Ok(failed(format!(
                        "refusing to convert from directory to symlink for {path}"
                    )));
                }
                Some(f) if f.kind == Kind::File && !force => {
                    return Ok(failed(format!(
                        "refusing to convert from file to symlink for {path}"
                    )));
                }
                _ => false,
            };
            if !up_to_date {
                changed = true;
                if !ctx.check_mode {
                    let cmd = if hard {
                        format!("ln -f -- {} {q}", quote(&src))
                    } else {
                        let rm = if current.as_ref().is_some_and(|f| f.kind == Kind::Dir) {
                            format!("rm -rf -- {q} && ")
                        } else {
                            String::new()
                        };
                        format!("{rm}ln -sfn -- {} {q}", quote(&src))
                    };
                    let out = ctx.sh(&cmd, None).await?;
                    if let Err(m) = check_rc(&out, &format!("cannot create the link {path}")) {
                        return Ok(m);
                    }
                }
            }
        }
        other => {
            return Ok(failed(format!(
                "value of state must be one of: absent, directory, file, hard, link, touch, got: {other}"
            )));
        }
    }
    // Attributes, then the final facts for the result.
    let now = if ctx.check_mode && changed && current.is_none() {
        None
    } else {
        tri!(remote_stat(ctx, &path, state != "link" && follow, None).await)
    };
    if let Some(f) = &now {
        let recurse = bool_arg(args, "recurse", false) && state == "directory";
        let attrs_changed = tri!(apply_attrs(ctx, &path, f, args, recurse).await);
        changed |= attrs_changed;
        // Stat again only if mode/owner/group were just changed.
        let f = if ctx.check_mode || !attrs_changed {
            f.clone()
        } else {
            tri!(remote_stat(ctx, &path, state != "link" && follow, None).await)
                .unwrap_or(f.clone())
        };
        path_info(&mut result, &path, &f);
        if state == "hard" {
            result.insert("state".into(), json!("hard"));
        }
    } else {
        result.insert(
            "state".into(),
            json!(if state == "touch" {
                "file"
            } else {
                state.as_str()
            }),
        );
    }
    result.insert("changed".into(), json!(changed));
    let after = if state == "touch" {
        "file".to_string()
    } else {
        state.clone()
    };
    add_diff(&mut result, ctx, &path, before_state, &after);
    Ok(result)
}

fn add_diff(
    m: &mut Map<String, Value>,
    ctx: &ModuleCtx<'_>,
    path: &str,
    before: &str,
    after: &str,
) {
    if ctx.diff {
        m.insert(
            "diff".into(),
            json!({"before": {"path": path, "state": before}, "after": {"path": path, "state": after}}),
        );
    }
}

/// Where a copy lands: `dest/` or an existing directory gets the source's file name.
async fn copy_dest(
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
async fn put_content(
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
    let local = match ctx.local.readable(&src) {
        Ok(p) => p,
        Err(e) => return Ok(failed(format!("Could not find or access '{src}': {e}"))),
    };
    if local.is_dir() {
        return copy_dir(ctx, &local, src.ends_with('/'), &dest, args).await;
    }
    let data = match std::fs::read(&local) {
        Ok(d) => d,
        Err(e) => return Ok(failed(format!("Could not read '{src}': {e}"))),
    };
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned());
    let dest = tri!(copy_dest(ctx, &dest, name.as_deref()).await);
    put_content(ctx, &dest, &data, args, Some(&local.to_string_lossy())).await
}

/// Copy a local directory: only files whose checksum differs travel, as one tar stream.
async fn copy_dir(
    ctx: &ModuleCtx<'_>,
    local: &Path,
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
            local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
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
        let Ok(data) = std::fs::read(path) else {
            continue;
        };
        if remote.get(rel) == Some(&checksum_bytes(&data)) {
            continue;
        }
        changed_files.push(rel.clone());
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        let mode = std::fs::metadata(path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0o644);
        header.set_mode(mode);
        header.set_mtime(chrono::Utc::now().timestamp() as u64);
        if builder
            .append_data(&mut header, rel, data.as_slice())
            .is_err()
        {
            return Ok(failed(format!("cannot pack {}", path.display())));
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

fn collect_files(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let r = rel.join(e.file_name());
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_files(&p, &r, out),
            Ok(t) if t.is_file() => out.push((p, r.to_string_lossy().into_owned())),
            _ => {}
        }
    }
}

/// `template`: render a local Jinja2 template with the host's vars and extra vars, then copy it.
pub async fn template(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let (Some(src), Some(dest)) = (str_arg(args, "src"), str_arg(args, "dest")) else {
        return Ok(failed("missing required arguments: src, dest"));
    };
    let local = match ctx.local.readable(&src) {
        Ok(p) => p,
        Err(e) => return Ok(failed(format!("Could not find or access '{src}': {e}"))),
    };
    let source = match std::fs::read_to_string(&local) {
        Ok(s) => s,
        Err(e) => return Ok(failed(format!("Could not read template '{src}': {e}"))),
    };
    let rendered = match render_template(&source, &local, ctx) {
        Ok(r) => r,
        Err(e) => {
            return Ok(failed(format!(
                "AnsibleError: template error while templating string: {e}"
            )));
        }
    };
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".j2").to_string());
    let dest = tri!(copy_dest(ctx, &dest, name.as_deref()).await);
    put_content(
        ctx,
        &dest,
        rendered.as_bytes(),
        args,
        Some(&local.to_string_lossy()),
    )
    .await
}

/// Render with minijinja, Jinja2-compatible, plus the Ansible filters templates use most.
pub fn render_template(source: &str, path: &Path, ctx: &ModuleCtx<'_>) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    fn as_json(v: &minijinja::Value) -> Result<Value, minijinja::Error> {
        serde_json::to_value(v).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
        })
    }
    env.add_filter(
        "to_json",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            Ok(crate::pyjson::to_string(&as_json(&v)?))
        },
    );
    env.add_filter(
        "to_nice_json",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            let j = crate::tree::sorted(&as_json(&v)?);
            // Serializing a JSON value into a String cannot fail.
            Ok(serde_json::to_string_pretty(&j).unwrap_or_default())
        },
    );
    env.add_filter("bool", |v: minijinja::Value| -> bool {
        match v.as_str() {
            Some(s) => crate::job::is_true_word(s),
            None => v.is_true(),
        }
    });
    env.add_filter(
        "mandatory",
        |v: minijinja::Value| -> Result<minijinja::Value, minijinja::Error> {
            if v.is_undefined() {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    "Mandatory variable not defined.",
                ))
            } else {
                Ok(v)
            }
        },
    );
    env.add_template("template", source)
        .map_err(|e| e.to_string())?;
    let mut vars = (ctx.vars)();
    vars.insert("ansible_managed".into(), json!("Ansible managed"));
    vars.insert("template_path".into(), json!(path.to_string_lossy()));
    vars.insert("template_host".into(), json!(ctx.host));
    vars.entry("inventory_hostname").or_insert(json!(ctx.host));
    env.get_template("template")
        .and_then(|t| t.render(minijinja::Value::from_serialize(&vars)))
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })
}

/// `stat`: facts about a path (`stat.exists`, mode, owner, checksum, ...).
pub async fn stat(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let Some(path) = str_arg_any(args, &["path", "dest", "name"]) else {
        return Ok(failed("missing required arguments: path"));
    };
    let follow = bool_arg(args, "follow", false);
    let alg = str_arg(args, "checksum_algorithm").unwrap_or_else(|| "sha1".into());
    let alg = match alg.as_str() {
        "sha1" | "sha256" | "sha512" | "md5" | "sha224" | "sha384" => alg,
        other => {
            return Ok(failed(format!(
                "checksum_algorithm {other} is not supported"
            )));
        }
    };
    let want_sum = bool_arg(args, "get_checksum", true).then_some(alg.as_str());
    let facts = tri!(remote_stat(ctx, &path, follow, want_sum).await);
    let Some(f) = facts else {
        return Ok(obj(json!({"changed": false, "stat": {"exists": false}})));
    };
    let mode = f.mode;
    let mut st = obj(json!({
        "exists": true, "path": path, "mode": format!("{mode:04o}"),
        "isdir": f.kind == Kind::Dir, "isreg": f.kind == Kind::File, "islnk": f.kind == Kind::Link,
        "isfifo": f.kind == Kind::Other("fifo".into()), "issock": f.kind == Kind::Other("socket".into()),
        "isblk": f.kind == Kind::Other("block special file".into()), "ischr": f.kind == Kind::Other("character special file".into()),
        "uid": f.uid, "gid": f.gid, "pw_name": f.owner, "gr_name": f.group, "size": f.size,
        "mtime": f.mtime, "atime": f.atime, "ctime": f.ctime, "inode": f.inode, "nlink": f.nlink,
        "xusr": mode & 0o100 != 0, "rusr": mode & 0o400 != 0, "wusr": mode & 0o200 != 0,
        "xgrp": mode & 0o010 != 0, "rgrp": mode & 0o040 != 0, "wgrp": mode & 0o020 != 0,
        "xoth": mode & 0o001 != 0, "roth": mode & 0o004 != 0, "woth": mode & 0o002 != 0,
        "isuid": mode & 0o4000 != 0, "isgid": mode & 0o2000 != 0,
    }));
    if let Some(t) = &f.link_target {
        st.insert("lnk_source".into(), json!(t));
        st.insert("lnk_target".into(), json!(t));
    }
    if let Some(s) = f.checksum {
        st.insert("checksum".into(), json!(s));
    }
    Ok(obj(json!({"changed": false, "stat": st})))
}

/// `slurp`: a remote file's content, base64-encoded.
pub async fn slurp(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    use base64::Engine;
    let Some(src) = str_arg_any(args, &["src", "path"]) else {
        return Ok(failed("missing required arguments: src"));
    };
    let q = quote(&src);
    let out = ctx.sh(&format!("if [ ! -e {q} ]; then echo 'file not found' >&2; exit 2; fi; if [ -d {q} ]; then echo 'source is a directory and must be a file' >&2; exit 3; fi; cat -- {q}"), None).await?;
    if out.rc != 0 {
        let why = text(&out.stderr).trim().to_string();
        return Ok(failed(format!("{why}: {src}")));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolic_modes_apply_like_chmod() {
        assert_eq!(apply_symbolic(0o644, "u+x", false), Some(0o744));
        assert_eq!(apply_symbolic(0o777, "go-w", false), Some(0o755));
        assert_eq!(apply_symbolic(0o600, "a+r", false), Some(0o644));
        assert_eq!(apply_symbolic(0o640, "u=rwx,g=rx,o=", false), Some(0o750));
        assert_eq!(apply_symbolic(0o644, "a+X", true), Some(0o755));
        assert_eq!(apply_symbolic(0o644, "a+X", false), Some(0o644));
        assert_eq!(wanted_mode("0600", 0o644, false), Some(0o600));
    }

    #[test]
    fn checksums_are_sha1() {
        assert_eq!(
            checksum_bytes(b"hello\n"),
            "f572d396fae9206628714fb2ce00f72e94f2258f"
        );
    }
}
