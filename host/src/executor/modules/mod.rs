//! Native modules: Ansible's argument names, result keys and `changed`/check-mode semantics,
//! implemented in Rust and run over any [`Connection`] with plain POSIX shell on the target (no
//! Python needed there).

/// Unwrap a module step that may fail: `tri!(step)` yields its value, or returns its failed
/// result as the module's answer (an unreachable host still propagates through `?`).
macro_rules! tri {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(m) => return Ok(m),
        }
    };
}

mod command;
mod copy;
mod fetch;
mod files;
mod gate;
mod lineinfile;
mod local_files;
mod system;
mod template;

use super::connection::{CommandOutput, Connection, Unreachable};
use super::login::Become;
use serde_json::{Map, Value, json};

pub use files::checksum_bytes;
pub use local_files::{LocalFiles, LocalPath};
pub use template::{Managed, failure_message as template_failure, render_file};

/// What a module needs to know besides its arguments.
pub struct ModuleCtx<'a> {
    /// How to reach the host.
    pub conn: &'a Connection,
    /// The host's inventory name.
    pub host: &'a str,
    /// `--check`: change nothing, report what would change.
    pub check_mode: bool,
    /// `--diff`: include a diff where the module supports it.
    pub diff: bool,
    /// Become for this call (from the host, the job or the call).
    pub become_: Option<Become>,
    /// Variables for templates (host vars, then extra vars), merged only when a module needs them.
    pub vars: &'a (dyn Fn() -> Map<String, Value> + Sync),
    /// Controller-side file access.
    pub local: &'a LocalFiles,
    /// `no_log` for this call.
    pub no_log: bool,
    /// Every other Ansible module, through the EE's ansible-core.
    pub ansible: &'a super::ansible::AnsibleModules,
    /// Ansible's `async`/`poll` for this call (run in the background by async_wrapper).
    pub asynchronous: Option<super::ansible::Async>,
    /// Told when a polled async job is still running and when it ends.
    pub on_async: &'a (dyn Fn(super::ansible::AsyncEvent, &Map<String, Value>) + Sync),
}

impl ModuleCtx<'_> {
    /// Run a shell command line on the target, through become when the call uses it.
    pub async fn sh(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<CommandOutput, Unreachable> {
        self.conn
            .exec_as(cmd, stdin, self.become_.as_ref(), None)
            .await
    }
}

/// The native modules, by short name.
pub const NATIVE: &[&str] = &[
    "ping",
    "command",
    "shell",
    "raw",
    "file",
    "copy",
    "stat",
    "slurp",
    "fetch",
    "template",
    "lineinfile",
    "wait_for_connection",
    "setup",
    "gather_facts",
];

/// A native module's short description (ansible-core's own `short_description`), for listing the
/// modules of an EE that has no ansible-core.
pub fn summary(short: &str) -> &'static str {
    match short {
        "ping" => "Try to connect to host, verify a usable python and return pong on success",
        "command" => "Execute commands on targets",
        "shell" => "Execute shell commands on targets",
        "raw" => "Executes a low-down and dirty command",
        "file" => "Manage files and file properties",
        "copy" => "Copy files to remote locations",
        "stat" => "Retrieve file or file system status",
        "slurp" => "Slurps a file from remote nodes",
        "fetch" => "Fetch files from remote nodes",
        "template" => "Template a file out to a target host",
        "lineinfile" => "Manage lines in text files",
        "wait_for_connection" => "Waits until remote system is reachable/usable",
        "setup" | "gather_facts" => "Gathers facts about remote hosts",
        _ => "",
    }
}

/// Whether ftl2-runner runs `module` itself for calls within its honoured options: always
/// without ansible-core; with one, only where the result needs nothing only the real module
/// computes (see `gate::real_reports_it`; facts always come from the real setup, see `run`).
pub fn stays_native(module: &str, with_core: bool) -> bool {
    canonical(module).is_some_and(|m| {
        !with_core
            || !(matches!(m, "setup" | "gather_facts") || gate::real_reports_it(m, false, false))
    })
}

/// The options native module `module` honours; a call with any other runs the real module.
pub fn native_options(module: &str) -> &'static [&'static str] {
    canonical(module).map(gate::honoured).unwrap_or(&[])
}

/// The native module `module` names, with or without `ansible.builtin.`/`ansible.legacy.`.
pub fn canonical(module: &str) -> Option<&'static str> {
    let short = module
        .strip_prefix("ansible.builtin.")
        .or_else(|| module.strip_prefix("ansible.legacy."))
        .unwrap_or(module);
    NATIVE.iter().find(|n| **n == short).copied()
}

/// Run `module` with `args`; an unreachable host is `Err`, everything else a result map.
pub async fn run(
    module: &str,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let mut args = args.clone();
    args.retain(|k, _| !k.starts_with("_ansible"));
    // Any module, native or not, goes to the background as Ansible's async does it.
    if let Some(opts) = ctx.asynchronous {
        return ctx.ansible.run_async(module, &args, ctx, opts).await;
    }
    let Some(name) = canonical(module).filter(|n| !forced_real(n)) else {
        return ctx.ansible.run(module, &args, ctx, None).await;
    };
    // Facts come from the real setup module when the EE has ansible-core (the native one knows
    // a fraction of Ansible's facts); the native one serves EEs without it.
    if matches!(name, "setup" | "gather_facts") && ctx.ansible.available().await {
        let real = if name == "gather_facts" {
            // The gather_facts action runs setup on Linux hosts; `parallel` is its own option.
            args.remove("parallel");
            "ansible.legacy.setup"
        } else {
            module
        };
        return ctx.ansible.run(real, &args, ctx, None).await;
    }
    if let Some(why) = gate::needs_real(name, &args) {
        return ctx.ansible.run(module, &args, ctx, Some(&why)).await;
    }
    let core = ctx.ansible.core().await.map(|c| with_inject_var(c, ctx));
    if let Some(core) = &core
        && (gate::real_reports_it(name, copies_a_directory(name, &args, ctx), ctx.check_mode)
            || gate::needs_real_for_invocation(name, &args, core))
    {
        return ctx.ansible.run(module, &args, ctx, None).await;
    }
    let result = native(name, &args, ctx).await?;
    Ok(match core {
        // fetch's own failures are already as its plugin reports them (fetch.rs).
        Some(core) if name != "fetch" => gate::as_reported(name, &args, result, &core, ctx.no_log),
        _ => result,
    })
}

/// The EE's ansible-core as this host's task sees it: from 2.21 the `ansible_inject_invocation`
/// variable, where set, decides whether results carry `invocation`.
fn with_inject_var<'a>(
    core: &'a crate::executor::ansible::Core,
    ctx: &ModuleCtx<'_>,
) -> std::borrow::Cow<'a, crate::executor::ansible::Core> {
    if core.version >= (2, 21)
        && let Some(v) = (ctx.vars)().get("ansible_inject_invocation")
        && let Some(b) = crate::boolean::ansible_bool(v)
        && b != core.injects_invocation
    {
        let mut core = core.clone();
        core.injects_invocation = b;
        return std::borrow::Cow::Owned(core);
    }
    std::borrow::Cow::Borrowed(core)
}

/// Whether a copy call copies a directory of the controller (which only the native copy does).
fn copies_a_directory(name: &str, args: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> bool {
    name == "copy"
        && !bool_arg(args, "remote_src", false)
        && str_arg(args, "src")
            .is_some_and(|s| s.ends_with('/') || ctx.local.readable(&s).is_ok_and(|p| p.is_dir()))
}

/// Run the native module `name`.
async fn native(
    name: &str,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let args = args.clone();
    match name {
        "ping" => system::ping(&args, ctx).await,
        "command" => command::command(&args, ctx, false).await,
        "shell" => command::command(&args, ctx, true).await,
        "raw" => command::raw(&args, ctx).await,
        "wait_for_connection" => system::wait_for_connection(&args, ctx).await,
        "setup" | "gather_facts" => system::setup(&args, ctx).await,
        "file" => files::file(&args, ctx).await,
        "copy" => copy::copy(&args, ctx).await,
        "template" => template::template(&args, ctx).await,
        "stat" => files::stat(&args, ctx).await,
        "slurp" => fetch::slurp(&args, ctx).await,
        // Boxed: it may run the real slurp module, whose state the others need not carry.
        "fetch" => Box::pin(fetch::fetch(&args, ctx)).await,
        "lineinfile" => lineinfile::lineinfile(&args, ctx).await,
        _ => Ok(failed(format!(
            "module {name} is listed but not dispatched"
        ))),
    }
}

/// Whether `FTL2_REAL_MODULES` (`all`, or a comma-separated list of native module names) hands
/// this native module to the real Ansible module instead.
fn forced_real(name: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let list = LIST.get_or_init(|| {
        std::env::var("FTL2_REAL_MODULES")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    list.iter().any(|m| m == "all" || m == name)
}

/// A failed result with a message, as modules return it.
pub fn failed(msg: impl Into<String>) -> Map<String, Value> {
    obj(json!({"changed": false, "failed": true, "msg": msg.into()}))
}

/// A JSON object as a map (empty for anything else).
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Quote one word for `/bin/sh`.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "''".into())
}

/// Quote words for `/bin/sh` so they arrive exactly as given.
pub fn shell_join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// A string argument (numbers are accepted as their text).
pub fn str_arg(args: &Map<String, Value>, key: &str) -> Option<String> {
    match args.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of several aliases given.
pub fn str_arg_any(args: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| str_arg(args, k))
}

/// A boolean argument, with Ansible's spellings (yes/no/true/false/1/0/on/off).
pub fn bool_arg(args: &Map<String, Value>, key: &str, default: bool) -> bool {
    args.get(key)
        .and_then(crate::boolean::ansible_bool)
        .unwrap_or(default)
}

/// Text of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fail with the command's stderr when it did not succeed.
pub fn check_rc(out: &CommandOutput, what: &str) -> Result<(), Map<String, Value>> {
    if out.rc == 0 {
        return Ok(());
    }
    let err = text(&out.stderr).trim().to_string();
    Err(obj(json!({
        "changed": false, "failed": true, "rc": out.rc,
        "msg": format!("{what}: {}", if err.is_empty() { format!("exit code {}", out.rc) } else { err }),
    })))
}

/// `mode=` as given (octal text, an int that is the octal value, or symbolic like `u+rwx`).
pub fn mode_arg(args: &Map<String, Value>) -> Result<Option<String>, String> {
    match args.get("mode") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_u64()
                .ok_or_else(|| format!("mode {n} is not a valid mode"))?;
            Ok(Some(format!("{v:04o}")))
        }
        Some(Value::String(s)) if s == "preserve" => Ok(Some("preserve".into())),
        Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_digit()) => {
            let v = u32::from_str_radix(s, 8)
                .map_err(|_| format!("mode {s:?} is not an octal mode"))?;
            Ok(Some(format!("{v:04o}")))
        }
        Some(Value::String(s)) => {
            if s.chars().all(|c| "ugoa+-=rwxXst,".contains(c)) {
                Ok(Some(s.clone()))
            } else {
                Err(format!("mode {s:?} must be octal or symbolic"))
            }
        }
        Some(other) => Err(format!("mode {other} must be a string or an integer")),
    }
}
