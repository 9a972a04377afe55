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
        && let Some(inv) = invocation(module, args)
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

/// The `invocation` the real module reports for these arguments (up to 2.19 every module
/// result has it), for the native modules whose arguments are few enough to know it exactly:
/// ping and slurp (each option given or defaulted, as text; a given alias kept beside its
/// option). command, shell and file are not here: their invocation lists every option's
/// default, which only the module's own argument spec holds (DESIGN.md).
pub fn invocation(module: &str, args: &Map<String, Value>) -> Option<Value> {
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
        }
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
