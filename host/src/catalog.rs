//! What a script can call, for its author: `ftl2-runner modules` lists every module (the native
//! ones and the EE's ansible-core and collections, as `ansible-doc -l` does) and `ftl2-runner doc
//! MODULE` shows one module's arguments as a script passes them. Both ask the EE's own
//! ansible-core through the module helper a job uses, so the list is exactly what a job run in
//! the same environment (PATH, `ANSIBLE_COLLECTIONS_PATH`, `ansible.cfg` of the current
//! directory) can resolve; without ansible-core they say that only the native modules exist.

use crate::executor::ansible::{Helper, HelperSpawn, action_note, find_python, strings};
use crate::executor::modules::{NATIVE, canonical, native_options, stays_native, summary};
use serde_json::{Map, Value, json};
use std::io::Write;

/// Width the descriptions are wrapped to.
const WIDTH: usize = 100;

/// `ftl2-runner modules [FILTER] [--json]`; returns the exit code.
pub fn modules(filter: Option<&str>, as_json: bool) -> i32 {
    let filter = filter.map(|f| f.trim_end_matches('.')).unwrap_or("");
    let (catalog, missing) = match ask(json!({"op": "catalog", "prefix": filter})) {
        Ok(c) => (Some(c), None),
        Err(Unavailable::NoCore(why)) => (None, Some(why)),
        Err(Unavailable::Failed(why)) => {
            eprintln!("ftl2-runner modules: error: {why}");
            return 1;
        }
    };
    let mut rows: Vec<(String, String, bool)> = match &catalog {
        Some(c) => c
            .get("modules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let name = m.get("name")?.as_str()?.to_string();
                let description = m.get("description").and_then(Value::as_str).unwrap_or("");
                let native = name.starts_with("ansible.builtin.") && stays_native(&name, true);
                Some((name, description.to_string(), native))
            })
            .collect(),
        None => NATIVE
            .iter()
            .map(|m| format!("ansible.builtin.{m}"))
            .filter(|n| filter.is_empty() || n == filter || n.starts_with(&format!("{filter}.")))
            .map(|n| {
                let short = n.trim_start_matches("ansible.builtin.");
                (n.clone(), summary(short).to_string(), true)
            })
            .collect(),
    };
    rows.sort();
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(n, d, native)| json!({"name": n, "description": d, "native": native}))
            .collect();
        let doc = json!({
            "ansible_version": catalog.as_ref().and_then(|c| c.get("ansible_version")),
            "collection_paths": catalog.as_ref().and_then(|c| c.get("collection_paths")),
            "modules": list,
        });
        let _ = writeln!(out, "{doc:#}");
    } else {
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).min(48);
        for (name, description, native) in &rows {
            let mark = if *native { "  [native]" } else { "" };
            let _ = writeln!(out, "{name:<width$} {description}{mark}");
        }
    }
    drop(out);
    if rows.is_empty() && !filter.is_empty() {
        eprintln!("ftl2-runner modules: no module matches '{filter}'");
        return 1;
    }
    let native = rows.iter().filter(|r| r.2).count();
    match (&catalog, missing) {
        (Some(c), _) => {
            let version = c
                .get("ansible_version")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let collections = c.get("collections").and_then(Value::as_u64).unwrap_or(0);
            let paths = strings(c.get("collection_paths")).join(":");
            eprintln!(
                "\n{} modules ({native} run by ftl2-runner itself, marked [native]) from \
                 ansible-core {version} and {collections} collections in {paths}.\n\
                 A script calls ansible.builtin modules by their short name \
                 (await ftl.web.copy(...)), others by their full name \
                 (await ftl.web.community.general.ufw(...)); `ftl2-runner doc NAME` shows a \
                 module's arguments.",
                rows.len()
            );
        }
        (None, Some(why)) => eprintln!(
            "\n{why}: only the {native} native modules above can be called; any other module \
             call fails."
        ),
        (None, None) => {}
    }
    0
}

/// `ftl2-runner doc MODULE [--json]`; returns the exit code.
pub fn doc(module: &str, as_json: bool) -> i32 {
    let answer = ask(json!({"op": "doc", "module": module}));
    let doc = match answer {
        Ok(d) => d,
        Err(Unavailable::NoCore(why)) => match native_doc(module) {
            Some(d) => {
                let mut d = d;
                d.insert("no_ansible_core".into(), json!(why));
                d
            }
            None => {
                eprintln!(
                    "ftl2-runner doc: error: {why}: {module} is not one of the native modules \
                     ({}), the only ones available",
                    NATIVE.join(", ")
                );
                return 1;
            }
        },
        Err(Unavailable::Failed(why)) => {
            eprintln!("ftl2-runner doc: error: {why}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let text = if as_json {
        format!("{:#}\n", Value::Object(doc))
    } else {
        render(module, &doc)
    };
    let _ = out.write_all(text.as_bytes());
    0
}

/// A native module's documentation when there is no ansible-core to read it from: its honoured
/// options, without their descriptions (those live in ansible-core's module source).
fn native_doc(module: &str) -> Option<Map<String, Value>> {
    let short = canonical(module)?;
    let options: Vec<Value> = native_options(short)
        .iter()
        .map(|o| json!({"name": o, "description": "", "type": "", "required": false}))
        .collect();
    let mut d = Map::new();
    d.insert("resolved".into(), json!(format!("ansible.builtin.{short}")));
    d.insert("short_description".into(), json!(summary(short)));
    d.insert("options".into(), Value::Array(options));
    Some(d)
}

/// The documentation as text: what it does, how a script calls it, which part runs natively,
/// then its arguments in ansible-doc's notation (`=` required, `-` optional).
fn render(asked: &str, doc: &Map<String, Value>) -> String {
    let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let resolved = text("resolved");
    let mut s = String::new();
    s += &format!("{resolved}: {}\n", text("short_description"));
    match doc.get("no_ansible_core").and_then(Value::as_str) {
        Some(why) => s += &format!("  {why}: the native module's arguments only.\n"),
        None => {
            s += &format!(
                "  {} (ansible-core {})\n",
                text("path"),
                text("ansible_version")
            )
        }
    }
    // A short name found in ansible.builtin is no redirect; anything else on the way is.
    let through: Vec<String> = strings(doc.get("redirects"))
        .into_iter()
        .filter(|r| {
            r != asked
                && *r != format!("ansible.builtin.{asked}")
                && *r != format!("ansible.legacy.{asked}")
        })
        .collect();
    if resolved != asked && resolved != format!("ansible.builtin.{asked}") {
        let via = if through.is_empty() {
            String::new()
        } else {
            format!(" (through {})", through.join(", "))
        };
        s += &format!("  {asked} is redirected to {resolved}{via}\n");
    }
    let deprecation = text("deprecation");
    if !deprecation.is_empty() {
        s += &format!("  DEPRECATED: {deprecation}\n");
    }
    let options: Vec<&Map<String, Value>> = doc
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    let call_name = resolved
        .strip_prefix("ansible.builtin.")
        .unwrap_or(&resolved);
    let required: Vec<String> = options
        .iter()
        .filter(|o| o.get("required").and_then(Value::as_bool) == Some(true))
        .filter_map(|o| o.get("name").and_then(Value::as_str))
        .map(|n| format!("{n}=..."))
        .collect();
    s += &format!(
        "\n  Called from a script as: await ftl.<hosts>.{call_name}({})\n",
        required.join(", ")
    );
    let with_core = doc.get("no_ansible_core").is_none();
    let native = stays_native(&resolved, with_core);
    if native {
        let honoured = native_options(&resolved).join(", ");
        let other = if with_core {
            "any other argument runs ansible-core's module"
        } else {
            "any other argument needs ansible-core's module, which this EE lacks"
        };
        s += &wrap(
            &format!(
                "Native: ftl2-runner runs it itself for calls that use only {honoured}; {other}."
            ),
            "  ",
        );
    }
    if let Some(action) = doc.get("action_plugin").and_then(Value::as_str)
        && !native
    {
        s += &wrap(
            &format!("Action plugin: {}.", action_note(&resolved, action)),
            "  ",
        );
    }
    if let Some(support) = doc.get("check_mode").and_then(Value::as_str) {
        s += &format!("  Check mode (--check, automation(check_mode=True)): {support}\n");
    }
    let description = text("description");
    if !description.is_empty() {
        s += "\n";
        for para in description.lines() {
            s += &wrap(para, "  ");
        }
    }
    s += "\nArguments (= required, - optional):\n";
    if options.is_empty() {
        s += "  none\n";
    }
    for o in &options {
        option(&mut s, o, "  ");
    }
    for (title, key) in [("Requirements", "requirements"), ("Notes", "notes")] {
        let items = strings(doc.get(key));
        if !items.is_empty() {
            s += &format!("\n{title}:\n");
            for item in items {
                s += &wrap(&format!("- {item}"), "  ");
            }
        }
    }
    s
}

/// One argument (and its suboptions, indented below it).
fn option(s: &mut String, o: &Map<String, Value>, indent: &str) {
    let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
    let mark = if o.get("required").and_then(Value::as_bool) == Some(true) {
        '='
    } else {
        '-'
    };
    let mut kind = o
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(e) = o.get("elements").and_then(Value::as_str) {
        kind = format!("{kind} of {e}");
    }
    let kind = if kind.is_empty() {
        String::new()
    } else {
        format!("  ({kind})")
    };
    *s += &format!("{indent}{mark} {name}{kind}\n");
    let inner = format!("{indent}    ");
    let description = o.get("description").and_then(Value::as_str).unwrap_or("");
    for para in description.lines() {
        *s += &wrap(para, &inner);
    }
    let aliases = strings(o.get("aliases"));
    if !aliases.is_empty() {
        *s += &format!("{inner}aliases: {}\n", aliases.join(", "));
    }
    if let Some(choices) = o.get("choices").and_then(Value::as_array) {
        let shown: Vec<String> = choices.iter().map(shown).collect();
        *s += &wrap(&format!("choices: {}", shown.join(", ")), &inner);
    }
    if let Some(default) = o.get("default") {
        *s += &format!("{inner}default: {}\n", shown(default));
    }
    for sub in o
        .get("suboptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        option(s, sub, &format!("{indent}    "));
    }
}

/// A value as a script writes it (Python literals: True, None, 'text').
fn shown(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// `text` wrapped to [`WIDTH`], each line starting with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            out += &format!("{indent}{line}\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line += word;
    }
    if !line.is_empty() {
        out += &format!("{indent}{line}\n");
    }
    out
}

/// Why the EE's ansible-core could not answer.
enum Unavailable {
    /// There is none (or it cannot be imported): only native modules exist.
    NoCore(String),
    /// It answered with an error (a module that does not exist, ...).
    Failed(String),
}

/// One request to the EE's ansible-core, found as a job finds it (`FTL2_ANSIBLE_PYTHON`, else
/// `ansible-config` on PATH), in this process's environment and directory.
fn ask(req: Value) -> Result<Map<String, Value>, Unavailable> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Unavailable::Failed(format!("cannot start the async runtime: {e}")))?
        .block_on(ask_helper(req))
}

async fn ask_helper(req: Value) -> Result<Map<String, Value>, Unavailable> {
    let path = std::env::var("PATH").unwrap_or_default();
    let python = find_python(std::env::var("FTL2_ANSIBLE_PYTHON").ok().as_deref(), &path)
        .map_err(Unavailable::NoCore)?;
    let spawn = HelperSpawn {
        python: Some(python),
        ..HelperSpawn::default()
    };
    let helper = Helper::start(&spawn).await.map_err(Unavailable::NoCore)?;
    let answer = helper.request(req).await.map_err(Unavailable::Failed)?;
    // What ansible-core warned about on the way (collections that do not support this
    // version, ...), as ansible-doc shows it.
    for warning in strings(answer.get("warnings")) {
        eprintln!("[WARNING]: {warning}");
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole_and_indents_every_line() {
        let text = "word ".repeat(40);
        let wrapped = wrap(&text, "    ");
        assert!(wrapped.lines().count() > 1);
        for line in wrapped.lines() {
            assert!(line.starts_with("    word"), "{line:?}");
            assert!(line.len() <= WIDTH, "{line:?}");
        }
    }

    #[test]
    fn values_are_shown_as_a_script_writes_them() {
        assert_eq!(shown(&json!(true)), "True");
        assert_eq!(shown(&json!(null)), "None");
        assert_eq!(shown(&json!(["a", 1])), "['a', 1]");
    }
}
