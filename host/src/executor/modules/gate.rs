//! Which native calls stay native. A native module honours only some of its Ansible module's
//! options; a call that uses any other option, misspells one, or gives one a value the native
//! code would read differently from Ansible (a boolean that is not one of Ansible's spellings, a
//! state it does not implement) goes to the real module instead. So nothing a script passes is
//! silently ignored, and a wrong call fails with Ansible's own message (`Unsupported parameters
//! for (file) module: mod ...`) before anything changes.

use crate::executor::ansible::Core;
use serde_json::{Map, Value};

/// A native module's options: the ones it honours, and which of them are booleans.
struct Options {
    names: &'static [&'static str],
    bools: &'static [&'static str],
    /// Allowed values of `state` (empty: any).
    states: &'static [&'static str],
}

fn options(module: &str) -> Options {
    const NONE: &[&str] = &[];
    let (names, bools, states): (&[&str], &[&str], &[&str]) = match module {
        "ping" => (&["data"], NONE, NONE),
        "command" | "shell" => (
            &[
                "_raw_params",
                "cmd",
                "argv",
                "chdir",
                "creates",
                "removes",
                "executable",
                "stdin",
                "stdin_add_newline",
                "strip_empty_ends",
            ],
            &["stdin_add_newline", "strip_empty_ends"],
            NONE,
        ),
        "raw" => (&["_raw_params", "cmd", "executable"], NONE, NONE),
        "file" => (
            &[
                "path", "dest", "name", "state", "follow", "force", "recurse", "src", "mode",
                "owner", "group",
            ],
            &["follow", "force", "recurse"],
            &["absent", "directory", "file", "touch", "link", "hard"],
        ),
        "copy" => (
            &[
                "src",
                "dest",
                "content",
                "remote_src",
                "force",
                "backup",
                "mode",
                "owner",
                "group",
            ],
            &["remote_src", "force", "backup"],
            NONE,
        ),
        "template" => (
            &["src", "dest", "force", "backup", "mode", "owner", "group"],
            &["force", "backup"],
            NONE,
        ),
        "stat" => (
            &[
                "path",
                "dest",
                "name",
                "follow",
                "get_checksum",
                "checksum_algorithm",
            ],
            &["follow", "get_checksum"],
            NONE,
        ),
        "slurp" => (&["src", "path"], NONE, NONE),
        "fetch" => (
            &[
                "src",
                "dest",
                "flat",
                "fail_on_missing",
                "validate_checksum",
            ],
            &["flat", "fail_on_missing", "validate_checksum"],
            NONE,
        ),
        "lineinfile" => (
            &[
                "path",
                "dest",
                "destfile",
                "name",
                "state",
                "line",
                "regexp",
                "regex",
                "search_string",
                "insertafter",
                "insertbefore",
                "create",
                "backrefs",
                "firstmatch",
            ],
            &["create", "backrefs", "firstmatch"],
            &["present", "absent"],
        ),
        "wait_for_connection" => (
            &["connect_timeout", "delay", "sleep", "timeout"],
            NONE,
            NONE,
        ),
        "setup" | "gather_facts" => (&["filter"], NONE, NONE),
        _ => (NONE, NONE, NONE),
    };
    Options {
        names,
        bools,
        states,
    }
}

/// The options native module `module` honours (its other options run the real module).
pub fn honoured(module: &str) -> &'static [&'static str] {
    options(module).names
}

/// Options Ansible refuses together (its modules' `mutually_exclusive`, and copy's action
/// plugin): the native code would quietly prefer one.
fn exclusive(module: &str) -> &'static [[&'static str; 2]] {
    match module {
        "copy" => &[["content", "src"]],
        "lineinfile" => &[
            ["insertbefore", "insertafter"],
            ["regexp", "search_string"],
            ["regex", "search_string"],
            ["backrefs", "search_string"],
        ],
        "command" | "shell" => &[["argv", "cmd"], ["argv", "_raw_params"]],
        _ => &[],
    }
}

/// Why the real module must run this call instead of the native one, if it must.
pub fn needs_real(module: &str, args: &Map<String, Value>) -> Option<String> {
    for [a, b] in exclusive(module) {
        if args.contains_key(*a) && args.contains_key(*b) {
            return Some(format!("{a} together with {b}"));
        }
    }
    let opts = options(module);
    let mut unknown: Vec<&str> = args
        .keys()
        .map(String::as_str)
        .filter(|k| !opts.names.contains(k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Some(format!("option(s) {}", unknown.join(", ")));
    }
    for b in opts.bools {
        if let Some(v) = args.get(*b)
            && crate::boolean::ansible_bool_strict(v).is_none()
        {
            return Some(format!("{b}={v}"));
        }
    }
    if !opts.states.is_empty()
        && let Some(v) = args.get("state")
        && !v.as_str().is_some_and(|s| opts.states.contains(&s))
    {
        return Some(format!("state={v}"));
    }
    None
}

/// Whether, with ansible-core in the EE, only the real module (or the copy action port, for
/// copy and template) reports this call as Ansible would. The native ping, command, shell, file
/// and slurp report what the real modules report (compared side by side in the tests), but for
/// `invocation` (the module's arguments with every default, which only the module knows; results
/// carry it up to 2.19) and 2.15 file's `diff`; they stay native, so jobs of these never start
/// Python on the hosts. stat (mime type, attributes, access checks), lineinfile (its diff list),
/// copy/template (the uploaded source, md5sum) and file in check mode (each of its states
/// reports it its own way) go to the real ones. The action plugins without a module (raw,
/// fetch, wait_for_connection) stay native: those are ports. A copy of a directory stays native
/// (the copy port takes one file or `content`).
pub fn real_reports_it(module: &str, copies_a_directory: bool, check_mode: bool) -> bool {
    match module {
        "copy" if copies_a_directory => false,
        "stat" | "lineinfile" | "copy" | "template" => true,
        "file" => check_mode,
        _ => false,
    }
}

/// A native result as the EE's ansible-core reports it: from 2.19 a failed result carries
/// TaskExecutor's `exception` summary, a command that exited non-zero says what this version's
/// command module says, up to 2.19 every result has TaskExecutor's `_ansible_no_log` mark and
/// modules report their `invocation` (where the native module knows it exactly).
pub fn as_reported(
    module: &str,
    args: &Map<String, Value>,
    mut result: Map<String, Value>,
    core: &Core,
    no_log: bool,
) -> Map<String, Value> {
    if core.injects_invocation
        && let Some(inv) = invocation(module, args, core)
    {
        result.entry("invocation").or_insert(inv);
    }
    if core.marks_no_log {
        result
            .entry("_ansible_no_log")
            .or_insert(Value::Bool(no_log));
    }
    if result.get("failed").and_then(Value::as_bool) != Some(true) {
        return result;
    }
    if matches!(module, "command" | "shell")
        && result.get("msg").and_then(Value::as_str) == Some("non-zero return code")
        && !core.command_failed_msg.is_empty()
    {
        result.insert("msg".into(), Value::String(core.command_failed_msg.clone()));
    }
    if core.version >= (2, 19) {
        result
            .entry("exception")
            .or_insert_with(|| Value::String("(traceback unavailable)".into()));
    }
    result
}

/// The `invocation` the real module reports for these arguments, built from this version's own
/// argument spec (`Core::specs`) as `AnsibleModule` builds it: every option, given or defaulted
/// (null without a default), converted to its type, a given alias kept beside its option; a
/// task's `cmd` moved into `_raw_params` where the module has no `cmd` (up to 2.18), shell as
/// command with `_uses_shell`. None where it cannot be known here: an unknown option, a value
/// whose conversion happens on the host (`~` or `$` in a path), or a file call without `state`
/// (the module works it out from the host). Such calls go to the real module (`needs_real_for_invocation`).
pub fn invocation(module: &str, args: &Map<String, Value>, core: &Core) -> Option<Value> {
    let spec_name = if module == "shell" { "command" } else { module };
    let Some(Value::Object(spec)) = core.specs.get(spec_name) else {
        return legacy_invocation(module, args);
    };
    let mut given = args.clone();
    if spec_name == "command" {
        if !spec.contains_key("cmd")
            && let Some(cmd) = given.remove("cmd")
        {
            given.insert("_raw_params".into(), cmd);
        }
        if module == "shell" {
            given.insert("_uses_shell".into(), Value::Bool(true));
        }
    }
    if module == "file" && !given.contains_key("state") {
        return None;
    }
    let mut module_args = Map::new();
    let mut known = 0;
    for (name, opt) in spec {
        let opt = opt.as_object()?;
        let aliases: Vec<&str> = opt
            .get("aliases")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let given_names: Vec<&str> = std::iter::once(name.as_str())
            .chain(aliases.iter().copied())
            .filter(|n| given.contains_key(*n))
            .collect();
        known += given_names.len();
        let value = match given_names.first() {
            Some(n) => convert(opt, &given[*n])?,
            None => opt.get("default").cloned().unwrap_or(Value::Null),
        };
        for alias in given_names.iter().filter(|n| **n != name) {
            module_args.insert((*alias).to_string(), value.clone());
        }
        module_args.insert(name.clone(), value);
    }
    if known != given.len() {
        return None;
    }
    Some(serde_json::json!({ "module_args": module_args }))
}

/// Without this version's spec (an EE whose module source could not be read): ping and slurp,
/// whose few options are known.
fn legacy_invocation(module: &str, args: &Map<String, Value>) -> Option<Value> {
    let text = |v: &Value| match v {
        Value::String(s) => Value::String(s.clone()),
        Value::Null => Value::Null,
        other => Value::String(other.to_string()),
    };
    let mut module_args = Map::new();
    match module {
        "ping" => {
            let data = args.get("data").map(text).unwrap_or_else(|| "pong".into());
            module_args.insert("data".into(), data);
        }
        "slurp" => {
            let src = args.get("src").or_else(|| args.get("path"))?;
            module_args.insert("src".into(), text(src));
            if args.contains_key("path") {
                module_args.insert("path".into(), text(src));
            }
        }
        _ => return None,
    }
    Some(serde_json::json!({ "module_args": module_args }))
}

/// A value as the module's argument validation leaves it for its type; None where that is
/// decided on the host or not known here.
fn convert(opt: &Map<String, Value>, v: &Value) -> Option<Value> {
    let ty = opt.get("type").and_then(Value::as_str).unwrap_or("str");
    if v.is_null() {
        return Some(Value::Null);
    }
    match ty {
        "str" => crate::pyjson::scalar_str(v).map(Value::String),
        "path" => {
            let s = crate::pyjson::scalar_str(v)?;
            // expanduser/expandvars run on the host.
            (!s.starts_with('~') && !s.contains('$')).then_some(Value::String(s))
        }
        "bool" => crate::boolean::ansible_bool_strict(v).map(Value::Bool),
        "raw" => Some(v.clone()),
        "int" => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(v.clone()),
            Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        },
        "list" => {
            let items: Vec<Value> = match v {
                Value::Array(a) => a.clone(),
                Value::String(s) => s.split(',').map(|p| Value::String(p.into())).collect(),
                Value::Number(_) => vec![Value::String(v.to_string())],
                _ => return None,
            };
            match opt.get("elements").and_then(Value::as_str) {
                None => Some(Value::Array(items)),
                Some("str") => items
                    .iter()
                    .map(|i| crate::pyjson::scalar_str(i).map(Value::String))
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// Whether this native call must go to the real module because only it can say what its
/// `invocation` is (where results carry one).
pub fn needs_real_for_invocation(module: &str, args: &Map<String, Value>, core: &Core) -> bool {
    core.injects_invocation
        && matches!(module, "command" | "shell" | "file" | "ping" | "slurp")
        && invocation(module, args, core).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core(version: (u32, u32)) -> Core {
        Core {
            version,
            command_failed_msg: "The command exited with a non-zero return code.".into(),
            marks_no_log: version < (2, 20),
            slurp_msgs: Core::default_slurp_msgs(),
            link_quote: '\'',
            fetch_names_file: true,
            fetch_refuses_dir_dest: true,
            injects_invocation: version < (2, 20),
            specs: Map::new(),
            exec_error_generic: version >= (2, 19),
        }
    }

    #[test]
    fn invocation_follows_the_versions_argument_spec() {
        let mut c = core((2, 15));
        c.specs = args(json!({
            "command": {"_raw_params": {}, "_uses_shell": {"type": "bool", "default": false},
                        "chdir": {"type": "path"}, "argv": {"type": "list", "elements": "str"},
                        "strip_empty_ends": {"type": "bool", "default": true}},
            "file": {"path": {"type": "path", "required": true, "aliases": ["dest", "name"]},
                     "state": {"type": "str"}, "mode": {"type": "raw"},
                     "recurse": {"type": "bool", "default": false}},
        }));
        let inv = invocation(
            "shell",
            &args(json!({"cmd": "echo hi", "strip_empty_ends": "no"})),
            &c,
        )
        .unwrap();
        assert_eq!(
            inv,
            json!({"module_args": {"_raw_params": "echo hi", "_uses_shell": true, "chdir": null,
                                   "argv": null, "strip_empty_ends": false}})
        );
        let inv = invocation(
            "file",
            &args(json!({"dest": "/x", "state": "directory", "mode": 448})),
            &c,
        )
        .unwrap();
        assert_eq!(
            inv,
            json!({"module_args": {"path": "/x", "dest": "/x", "state": "directory", "mode": 448,
                                   "recurse": false}})
        );
        let inv = invocation("command", &args(json!({"argv": ["a", 1]})), &c).unwrap();
        assert_eq!(inv["module_args"]["argv"], json!(["a", "1"]));
        // What only the host or the module can tell: the real module reports it.
        for (m, a) in [
            ("command", json!({"cmd": "ls", "chdir": "~/x"})),
            ("command", json!({"cmd": "ls", "frob": 1})),
            ("file", json!({"path": "/x"})),
        ] {
            assert!(
                needs_real_for_invocation(m, &args(a.clone()), &c),
                "{m} {a}"
            );
        }
        assert!(!needs_real_for_invocation(
            "command",
            &args(json!({"cmd": "ls", "chdir": "~/x"})),
            &core((2, 21))
        ));
    }

    #[test]
    fn only_what_the_native_code_reports_exactly_stays_native() {
        for m in ["ping", "command", "shell", "file", "slurp", "raw", "fetch"] {
            assert!(!real_reports_it(m, false, false), "{m}");
        }
        for m in ["stat", "lineinfile", "copy", "template"] {
            assert!(real_reports_it(m, false, false), "{m}");
        }
        assert!(real_reports_it("file", false, true));
        assert!(!real_reports_it("copy", true, false));
    }

    #[test]
    fn native_results_take_this_versions_shape() {
        let failed = |msg: &str| args(json!({"failed": true, "msg": msg, "rc": 1}));
        let none = Map::new();
        let r = as_reported(
            "command",
            &none,
            failed("non-zero return code"),
            &core((2, 21)),
            false,
        );
        assert_eq!(r["msg"], "The command exited with a non-zero return code.");
        assert_eq!(r["exception"], "(traceback unavailable)");
        assert!(!r.contains_key("_ansible_no_log"));
        let r = as_reported("raw", &none, failed("x"), &core((2, 15)), true);
        assert_eq!(r["_ansible_no_log"], true);
        assert!(!r.contains_key("exception"));
        let ok = as_reported(
            "ping",
            &none,
            args(json!({"ping": "pong"})),
            &core((2, 21)),
            false,
        );
        assert_eq!(Value::Object(ok), json!({"ping": "pong"}));
        // Up to 2.19 modules report their arguments, as text, aliases beside their options.
        let ping = args(json!({"data": 5}));
        let ok = as_reported(
            "ping",
            &ping,
            args(json!({"ping": "5"})),
            &core((2, 19)),
            false,
        );
        assert_eq!(ok["invocation"], json!({"module_args": {"data": "5"}}));
        let slurp = args(json!({"path": "/etc/hostname"}));
        let ok = as_reported("slurp", &slurp, Map::new(), &core((2, 15)), false);
        let both = json!({"path": "/etc/hostname", "src": "/etc/hostname"});
        assert_eq!(ok["invocation"], json!({ "module_args": both }));
    }

    fn args(v: Value) -> Map<String, Value> {
        super::super::obj(v)
    }

    #[test]
    fn typos_unhandled_options_and_odd_values_go_to_the_real_module() {
        assert_eq!(
            needs_real(
                "file",
                &args(json!({"path": "/x", "state": "directory", "mode": "0700"}))
            ),
            None
        );
        assert_eq!(
            needs_real("file", &args(json!({"path": "/x", "mod": "0700"}))).as_deref(),
            Some("option(s) mod")
        );
        assert!(
            needs_real(
                "file",
                &args(json!({"path": "/x", "modification_time": "preserve"}))
            )
            .is_some()
        );
        assert!(needs_real("file", &args(json!({"path": "/x", "state": "fifo"}))).is_some());
        assert!(needs_real("file", &args(json!({"path": "/x", "recurse": "maybe"}))).is_some());
        assert_eq!(
            needs_real("file", &args(json!({"path": "/x", "recurse": "yes"}))),
            None
        );
        assert!(
            needs_real(
                "lineinfile",
                &args(json!({"path": "/x", "line": "a", "backup": true}))
            )
            .is_some()
        );
        assert!(needs_real("setup", &args(json!({"gather_subset": "!all"}))).is_some());
        assert_eq!(
            needs_real("command", &args(json!({"cmd": "true", "chdir": "/"}))),
            None
        );
    }
}
