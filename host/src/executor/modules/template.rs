//! `template`: a local Jinja2 template rendered on the controller with minijinja (Ansible's
//! template settings, the filters templates use most, the variables Ansible's template plugin
//! adds), then copied as `copy` does.

use super::files::ModResult;
use super::{LocalPath, ModuleCtx, failed, str_arg};
use serde_json::{Map, Value, json};
use std::path::Path;

/// `template`: render a local Jinja2 template with the host's vars and extra vars, then copy it.
pub async fn template(args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> ModResult {
    let (Some(src), Some(dest)) = (str_arg(args, "src"), str_arg(args, "dest")) else {
        return Ok(failed("missing required arguments: src, dest"));
    };
    let (local, rendered) = match render_file(&src, &dest, ctx, &Managed::default()) {
        Ok(r) => r,
        Err(msg) => return Ok(failed(failure_message(msg, ctx).await)),
    };
    let name = local
        .file_name()
        .to_string_lossy()
        .trim_end_matches(".j2")
        .to_string();
    let name = (!name.is_empty()).then_some(name);
    let dest = tri!(super::copy::copy_dest(ctx, &dest, name.as_deref()).await);
    super::copy::put_content(
        ctx,
        &dest,
        rendered.as_bytes(),
        args,
        Some(&local.path().to_string_lossy()),
    )
    .await
}

/// Find the template `src` the script may read and render it for a copy to `dest`: its local
/// path and the text, or the failure message.
pub fn render_file(
    src: &str,
    dest: &str,
    ctx: &ModuleCtx<'_>,
    managed: &Managed,
) -> Result<(LocalPath, String), String> {
    let local = ctx
        .local
        .readable(&ctx.local.find_needle("templates", src))
        .map_err(|e| format!("Could not find or access '{src}': {e}"))?;
    let source = local
        .read()
        .and_then(|d| String::from_utf8(d).map_err(std::io::Error::other))
        .map_err(|e| format!("Could not read template '{src}': {e}"))?;
    let fullpath = local.path();
    let mut vars = (ctx.vars)();
    vars.entry("inventory_hostname").or_insert(json!(ctx.host));
    let file = TemplateFile {
        path: src,
        fullpath: &fullpath,
        dest,
    };
    let rendered = render_template(&source, &vars, Some((&file, managed))).map_err(|e| {
        if e.starts_with(UNDEFINED) || e.starts_with(NO_ATTRIBUTE) {
            e
        } else {
            format!("AnsibleError: template error while templating string: {e}")
        }
    })?;
    Ok((local, rendered))
}

/// Render with minijinja, Jinja2-compatible, plus the Ansible filters templates use most;
/// `file`: the template file the text came from, whose variables Ansible's template plugin
/// adds (`template_*`, `ansible_managed`).
pub fn render_template(
    source: &str,
    vars: &Map<String, Value>,
    file: Option<(&TemplateFile<'_>, &Managed)>,
) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    // The template module's defaults: trim_blocks on, lstrip_blocks off, trailing newline kept.
    env.set_trim_blocks(true);
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
    // Jinja's sum(attribute=, start=), which minijinja's builtin lacks.
    env.add_filter(
        "sum",
        |v: minijinja::Value,
         kwargs: minijinja::value::Kwargs|
         -> Result<minijinja::Value, minijinja::Error> {
            let attr: Option<String> = kwargs.get("attribute")?;
            let start: Option<minijinja::Value> = kwargs.get("start")?;
            kwargs.assert_all_used()?;
            let mut total = start.unwrap_or(minijinja::Value::from(0));
            for item in v.try_iter()? {
                let x = match &attr {
                    Some(a) => a
                        .split('.')
                        .try_fold(item, |cur, part| cur.get_attr(part))?,
                    None => item,
                };
                total = match (i64::try_from(total.clone()), i64::try_from(x.clone())) {
                    (Ok(a), Ok(b)) => minijinja::Value::from(a + b),
                    _ => match (f64::try_from(total.clone()), f64::try_from(x.clone())) {
                        (Ok(a), Ok(b)) => minijinja::Value::from(a + b),
                        _ => {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                format!("sum: cannot add {x} to {total}"),
                            ));
                        }
                    },
                };
            }
            Ok(total)
        },
    );
    env.add_filter("bool", |v: minijinja::Value| -> bool {
        match v.as_str() {
            Some(s) => crate::boolean::is_true_word(s),
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
    let mut ctx = minijinja::Value::from_serialize(vars);
    if let Some((file, managed)) = file {
        let added = file.vars(vars, managed).map_err(|e| e.to_string())?;
        // The plugin's variables win over the job's (Ansible updates the task vars with them).
        ctx = minijinja::context! { ..added, ..ctx };
    }
    let template = env.get_template("template").map_err(|e| e.to_string())?;
    template.render(&ctx).map_err(|e| {
        if e.kind() == minijinja::ErrorKind::UndefinedError
            && let Some(name) = first_undefined(source, &template, &ctx, &env)
        {
            return format!("{UNDEFINED}{name}");
        }
        if e.kind() == minijinja::ErrorKind::UndefinedError
            && let Some((kind, key)) = first_missing_attribute(source, &ctx)
        {
            return format!("{NO_ATTRIBUTE}{kind}\u{1}{key}");
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    })
}

/// Marks a render failure caused by an undefined top-level variable (the name follows), for
/// [`failure_message`] to word as the job's ansible-core does.
const UNDEFINED: &str = "\u{1}undefined:";

/// The top-level variable the template uses that is defined nowhere (neither a variable, nor a
/// global, nor set in the template), the first in the text, when there is one.
fn first_undefined(
    source: &str,
    template: &minijinja::Template<'_, '_>,
    ctx: &minijinja::Value,
    env: &minijinja::Environment<'_>,
) -> Option<String> {
    let missing = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| {
            ctx.get_attr(n).map_or(true, |v| v.is_undefined()) && env.globals().all(|(g, _)| g != n)
        });
    let position = |name: &str| {
        source.match_indices(name).map(|(i, _)| i).find(|&i| {
            let word = |c: char| c.is_alphanumeric() || c == '_';
            !source[..i].ends_with(word) && !source[i + name.len()..].starts_with(word)
        })
    };
    missing.min_by_key(|n| position(n).unwrap_or(usize::MAX))
}

/// Marks a render failure caused by a missing key or index of a defined variable (the value's
/// Python type name and the key as Python shows it follow, split by `\u{1}`).
const NO_ATTRIBUTE: &str = "\u{1}no-attribute:";

/// The first `name.key`, `name['key']` or `name[3]` in the template's tags whose variable is
/// defined but lacks the key: (the value's Python type name, the key as Python shows it). Loop
/// and `set` variables are not known here, so chains starting with them are passed over.
fn first_missing_attribute(source: &str, ctx: &minijinja::Value) -> Option<(String, String)> {
    static TAG: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}").expect("valid regex")
    });
    static CHAIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(^|[^\w.'"])([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*(?:'[^']*'|"[^"]*"|-?\d+)\s*\])+)"#,
        )
        .expect("valid regex")
    });
    static STEP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"\.\s*([A-Za-z_]\w*)|\[\s*(?:'([^']*)'|"([^"]*)"|(-?\d+))\s*\]"#)
            .expect("valid regex")
    });
    for tag in TAG.find_iter(source) {
        for chain in CHAIN.captures_iter(tag.as_str()) {
            let Some(mut value) = ctx.get_attr(&chain[2]).ok().filter(|v| !v.is_undefined()) else {
                continue;
            };
            for step in STEP.captures_iter(&chain[3]) {
                let (key, shown) = match (step.get(4), step.get(1).or(step.get(2)).or(step.get(3)))
                {
                    (Some(index), _) => match index.as_str().parse::<i64>() {
                        Ok(i) => (minijinja::Value::from(i), i.to_string()),
                        Err(_) => break,
                    },
                    (None, Some(name)) => (
                        minijinja::Value::from(name.as_str()),
                        format!("'{}'", name.as_str()),
                    ),
                    (None, None) => break,
                };
                let next = value.get_item(&key).unwrap_or_default();
                if next.is_undefined() {
                    return Some((python_type(&value), shown));
                }
                value = next;
            }
        }
    }
    None
}

/// The Python type name of a template value, as Jinja's errors name it.
fn python_type(v: &minijinja::Value) -> String {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Map => "dict",
        ValueKind::Seq => "list",
        ValueKind::String => "str",
        ValueKind::Bool => "bool",
        ValueKind::None => "NoneType",
        ValueKind::Number if v.as_i64().is_some() => "int",
        ValueKind::Number => "float",
        _ => "object",
    }
    .into()
}

/// A template failure's message as the job's ansible-core words it: an undefined variable is
/// named (2.19 and later: `Task failed: 'x' is undefined`; earlier: `AnsibleUndefinedVariable:
/// 'x' is undefined. 'x' is undefined`), and so is a missing key (2.19 and later: `object of
/// type 'dict' has no attribute 'k'`; earlier Jinja's `'dict object' has no attribute 'k'`,
/// `list object has no element 5`); other failures as rendered.
pub async fn failure_message(msg: String, ctx: &ModuleCtx<'_>) -> String {
    let before_2_19 = || async {
        ctx.ansible
            .core()
            .await
            .is_some_and(|core| core.version < (2, 19))
    };
    if let Some(name) = msg.strip_prefix(UNDEFINED) {
        return if before_2_19().await {
            format!("AnsibleUndefinedVariable: '{name}' is undefined. '{name}' is undefined")
        } else {
            format!("Task failed: '{name}' is undefined")
        };
    }
    let Some((kind, key)) = msg
        .strip_prefix(NO_ATTRIBUTE)
        .and_then(|rest| rest.split_once('\u{1}'))
    else {
        return msg;
    };
    if !before_2_19().await {
        return format!("Task failed: object of type '{kind}' has no attribute {key}");
    }
    let what = if kind == "list" && !key.starts_with('\'') {
        format!("list object has no element {key}")
    } else {
        format!("'{kind} object' has no attribute {key}")
    };
    format!("AnsibleUndefinedVariable: {what}. {what}")
}

/// A template file as Ansible's template plugin describes it to the template.
pub struct TemplateFile<'a> {
    /// `src` as the call gave it (`template_path`).
    pub path: &'a str,
    /// Where it was found (`template_fullpath`).
    pub fullpath: &'a Path,
    /// `dest` as the call gave it (`template_destpath`).
    pub dest: &'a str,
}

/// How the job's ansible-core makes `ansible_managed`: its `DEFAULT_MANAGED_STR` setting
/// (`[defaults] ansible_managed` in ansible.cfg) and whether a variable of that name the job
/// sets itself wins (2.19 and later) or is overwritten (earlier).
#[derive(Debug, Clone)]
pub struct Managed {
    /// The setting: a `strftime` format with `{host}`, `{uid}` and `{file}` fields.
    pub format: String,
    /// Whether the job's own `ansible_managed` variable is kept.
    pub user_value_wins: bool,
}

impl Default for Managed {
    /// ansible-core's default (and the newest versions' precedence), for EEs without it.
    fn default() -> Self {
        Managed {
            format: "Ansible managed".into(),
            user_value_wins: true,
        }
    }
}

impl TemplateFile<'_> {
    /// The variables the template plugin adds (`generate_ansible_template_vars`): the
    /// controller's host name, the file's owner and modification time, now, the paths and
    /// `ansible_managed` (the setting with its fields filled, through `strftime` at the file's
    /// modification time).
    fn vars(
        &self,
        job_vars: &Map<String, Value>,
        managed: &Managed,
    ) -> Result<minijinja::Value, String> {
        use minijinja::Value as V;
        let meta = std::fs::metadata(self.fullpath)
            .map_err(|e| format!("cannot stat {}: {e}", self.fullpath.display()))?;
        let mtime = meta
            .modified()
            .map(chrono::DateTime::<chrono::Local>::from)
            .map_err(|e| format!("cannot read the time of {}: {e}", self.fullpath.display()))?
            .naive_local();
        let host = controller_host_name();
        let uid = {
            use std::os::unix::fs::MetadataExt;
            user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string())
        };
        let mut added = std::collections::BTreeMap::from([
            ("template_host", V::from(host.clone())),
            ("template_path", V::from(self.path)),
            ("template_mtime", V::from_object(PyDateTime(mtime))),
            ("template_uid", V::from(uid.clone())),
            (
                "template_run_date",
                V::from_object(PyDateTime(chrono::Local::now().naive_local())),
            ),
            ("template_destpath", V::from(self.dest)),
            (
                "template_fullpath",
                V::from(self.fullpath.to_string_lossy().into_owned()),
            ),
        ]);
        if !(managed.user_value_wins && job_vars.contains_key("ansible_managed")) {
            let fields = fill_fields(&managed.format, &host, &uid, self.path)?;
            added.insert("ansible_managed", V::from(strftime(&mtime, &fields)?));
        }
        Ok(V::from_iter(added))
    }
}

/// Python's `str.format` of the `ansible_managed` setting with its three fields.
fn fill_fields(format: &str, host: &str, uid: &str, file: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let Some(end) = tail.find('}').filter(|_| tail.starts_with('{')) else {
            return Err(format!(
                "the ansible_managed setting {format:?} has a single '}}'"
            ));
        };
        match &tail[1..end] {
            "host" => out.push_str(host),
            "uid" => out.push_str(uid),
            "file" => out.push_str(file),
            other => {
                return Err(format!(
                    "the ansible_managed setting {format:?} names {{{other}}}; only {{host}}, \
                     {{uid}} and {{file}} exist"
                ));
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// C's `strftime`, as Python's `time.strftime` runs it; a directive chrono does not know is an
/// error rather than a panic.
fn strftime(at: &chrono::NaiveDateTime, format: &str) -> Result<String, String> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("invalid strftime format {format:?}"));
    }
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", at.format_with_items(items.into_iter()))
        .map_err(|_| format!("cannot format a time with {format:?}"))?;
    Ok(out)
}

/// The controller's host name, as Python's `os.uname()[1]` gives it.
fn controller_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The name of the user `uid` (through NSS, as Python's `pwd.getpwuid`).
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type and size; on success
    // `pw_name` points into `buf`, read before `buf` goes away.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: `pw_name` is a NUL-terminated string inside `buf` (see above).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// A Python `datetime` in a template: printed as `str()` prints it, with `strftime`,
/// `isoformat` and the date and time fields, as templates use `template_run_date`.
#[derive(Debug)]
struct PyDateTime(chrono::NaiveDateTime);

impl minijinja::value::Object for PyDateTime {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        Some(minijinja::Value::from(match key.as_str()? {
            "year" => t.year() as i64,
            "month" => t.month() as i64,
            "day" => t.day() as i64,
            "hour" => t.hour() as i64,
            "minute" => t.minute() as i64,
            "second" => t.second() as i64,
            "microsecond" => (t.nanosecond() / 1000) as i64,
            _ => return None,
        }))
    }

    fn call_method(
        self: &std::sync::Arc<Self>,
        _state: &minijinja::State<'_, '_>,
        method: &str,
        args: &[minijinja::Value],
    ) -> Result<minijinja::Value, minijinja::Error> {
        let bad = |msg: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg);
        match (method, args) {
            ("strftime", [fmt]) => {
                let fmt = fmt
                    .as_str()
                    .ok_or_else(|| bad("strftime() takes a string".into()))?;
                strftime(&self.0, fmt)
                    .map(minijinja::Value::from)
                    .map_err(bad)
            }
            ("isoformat", []) => Ok(minijinja::Value::from(self.python_str('T'))),
            _ => Err(minijinja::Error::from(minijinja::ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.python_str(' '))
    }
}

impl PyDateTime {
    /// `isoformat(sep)`: microseconds only when there are any, as Python prints them.
    fn python_str(&self, sep: char) -> String {
        use chrono::Timelike;
        let t = &self.0;
        let micros = t.nanosecond() / 1000;
        let base = format!("{}{sep}{}", t.format("%Y-%m-%d"), t.format("%H:%M:%S"));
        if micros == 0 {
            base
        } else {
            format!("{base}.{micros:06}")
        }
    }
}
