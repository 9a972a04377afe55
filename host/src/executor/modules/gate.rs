//! Which native calls stay native. A native module honours only some of its Ansible module's
//! options; a call that uses any other option, misspells one, or gives one a value the native
//! code would read differently from Ansible (a boolean that is not one of Ansible's spellings, a
//! state it does not implement) goes to the real module instead. So nothing a script passes is
//! silently ignored, and a wrong call fails with Ansible's own message (`Unsupported parameters
//! for (file) module: mod ...`) before anything changes.

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
            &["src", "dest", "flat", "fail_on_missing"],
            &["flat", "fail_on_missing"],
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
