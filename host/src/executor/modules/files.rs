//! File modules: `file` and `stat`, and the file facts and attributes the others share.
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

pub(super) type ModResult = Result<Map<String, Value>, Unreachable>;

/// Hex sha1 of bytes, Ansible's file checksum.
pub fn checksum_bytes(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kind of file at a path.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    File,
    Dir,
    Link,
    Other(String),
}

/// What `stat -c` tells about a path on the target.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub(super) kind: Kind,
    pub(super) mode: u32,
    pub(super) owner: String,
    pub(super) group: String,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) size: u64,
    pub(super) mtime: f64,
    pub(super) atime: f64,
    pub(super) ctime: f64,
    pub(super) inode: u64,
    pub(super) nlink: u64,
    pub(super) link_target: Option<String>,
    pub(super) checksum: Option<String>,
}

const STAT_FMT: &str = "%F|%a|%U|%G|%u|%g|%s|%.9Y|%.9X|%.9Z|%i|%h";

/// Stat `path` on the target (following links if `follow`), with its sha1 when `checksum`.
pub(super) async fn remote_stat(
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
pub(super) fn path_info(m: &mut Map<String, Value>, path: &str, f: &Facts) {
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
pub(super) async fn apply_attrs(
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

/// Under `--diff`, record the before/after state of `path`, as Ansible's file module reports it.
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
    // A symlink (made with force) whose target does not exist.
    let mut dangling = false;
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
            if hard {
                let out = ctx.sh(&format!("test -e {}", quote(&src)), None).await?;
                if out.rc != 0 {
                    let mut m = failed("src does not exist");
                    m.insert("dest".into(), json!(path));
                    m.insert("src".into(), json!(src));
                    return Ok(m);
                }
            } else {
                // A relative src is relative to the link's directory (or the directory itself).
                let base = match &current {
                    Some(f) if f.kind == Kind::Dir => path.clone(),
                    _ => std::path::Path::new(&path)
                        .parent()
                        .map(|d| d.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                let absrc = if src.starts_with('/') {
                    src.clone()
                } else {
                    format!("{base}/{src}")
                };
                let out = ctx.sh(&format!("test -e {}", quote(&absrc)), None).await?;
                dangling = out.rc != 0;
                if dangling && !force {
                    let q = ctx.ansible.core().await.map_or('\'', |c| c.link_quote);
                    let mut m = failed(format!(
                        "src file does not exist, use {q}force=yes{q} if you really want to \
                         create the link: {absrc}"
                    ));
                    m.insert("path".into(), json!(path));
                    m.insert("src".into(), json!(src));
                    return Ok(m);
                }
            }
            let up_to_date = match &current {
                Some(f) if !hard && f.kind == Kind::Link => {
                    f.link_target.as_deref() == Some(src.as_str())
                }
                Some(f) if hard => {
                    let src_facts = tri!(remote_stat(ctx, &src, false, None).await);
                    src_facts.is_some_and(|sf| sf.inode == f.inode)
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
    if dangling && follow {
        // The file module sets no attributes through a link to nothing, and reports no facts.
        let mut m = obj(json!({"dest": path, "src": str_arg(args, "src"), "changed": changed}));
        m.insert(
            "warnings".into(),
            json!([
                "Cannot set fs attributes on a non-existent symlink target. follow should be set \
                 to False to avoid this."
            ]),
        );
        add_diff(&mut m, ctx, &path, before_state, "link");
        return Ok(m);
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
    // The file module reports touch, link and hard as `dest` (other states as `path`).
    if matches!(state.as_str(), "touch" | "link" | "hard")
        && let Some(p) = result.remove("path")
    {
        result.insert("dest".into(), p);
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
