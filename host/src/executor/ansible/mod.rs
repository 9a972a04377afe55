//! Every Ansible module that is not native: resolved, built and parsed by the EE's own
//! ansible-core (through one helper process per job, see `helper.py`), and run by us over the
//! host's connection the way Ansible runs it with pipelining: the AnsiballZ payload on the stdin
//! of the target's Python, through become when the call uses it.
//!
//! Building through ansible-core itself, rather than in Rust, keeps the payload and the internal
//! `_ansible_*` parameters exactly what the installed version sends (2.15 through 2.21 differ),
//! and result parsing exactly what it reports (junk around the JSON, MODULE FAILURE shapes).

mod action_bridge;
mod actions;
mod async_job;
mod copy_action;
mod helper;
mod remote_tmp;
mod resident;
mod rsync_ssh;
mod synchronize;

pub use async_job::{Async, AsyncEvent};
pub use helper::{Helper, HelperSpawn, find_python};
pub use rsync_ssh::{is_shim as is_rsync_ssh, shim_main as rsync_ssh_main};

use super::connection::Unreachable;
use super::modules::{ModuleCtx, failed};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// One module call's payload, built once per distinct call (module, arguments, interpreter,
/// options) and shared by every host it runs on.
struct Built {
    resolved: String,
    payload: Vec<u8>,
    command: String,
    interpreter: String,
    profile: Value,
    action_plugin: Option<String>,
    warnings: Vec<String>,
}

type Shared<T> = Arc<OnceCell<T>>;

/// Who asks for a module run, which decides what a controller-side action plugin means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller<'a> {
    /// The script named the module: an action plugin we cannot honour is refused.
    Script,
    /// The script named a native module with options only the real one handles (said here).
    InsteadOfNative(&'a str),
    /// One of our action ports, which has done the plugin's part itself.
    Port,
}

/// What native modules need to know of the EE's ansible-core to report as its modules do.
#[derive(Debug, Clone, Default)]
pub struct Core {
    /// (major, minor), e.g. (2, 19).
    pub version: (u32, u32),
    /// The command module's `msg` for a non-zero return code in this version (it changed).
    pub command_failed_msg: String,
    /// Whether TaskExecutor marks every result with `_ansible_no_log` (up to 2.19).
    pub marks_no_log: bool,
    /// slurp's messages for a missing, unreadable and directory source (2.15 lower-cased them).
    pub slurp_msgs: [String; 3],
    /// The quote around `force=yes` in the file module's dangling-link message (2.15: `"`).
    pub link_quote: char,
    /// Whether the fetch plugin names the source (`file`) in a changed result (2.21 does).
    pub fetch_names_file: bool,
    /// Whether the fetch plugin refuses a flat `dest/` whose computed file is a directory.
    pub fetch_refuses_dir_dest: bool,
    /// Whether every module result reports its `invocation`: up to 2.19 always, from 2.21 when
    /// the INJECT_INVOCATION setting (environment or ansible.cfg) says so; the
    /// `ansible_inject_invocation` variable overrides it per host.
    pub injects_invocation: bool,
    /// The argument specs of ping, slurp, command and file in this version (from their source),
    /// from which native results report `invocation` as the module would.
    pub specs: Map<String, Value>,
    /// Whether `run_command` says "Error executing command." for a program that cannot be
    /// started (2.19 on) rather than Python's OSError text.
    pub exec_error_generic: bool,
}

impl Core {
    /// The messages of ansible-core 2.19 and later (for EEs without ansible-core).
    pub fn default_slurp_msgs() -> [String; 3] {
        [
            "File not found: ".into(),
            "File is not readable: ".into(),
            "Source is a directory and must be a file: ".into(),
        ]
    }
}

/// Asks the EE's Python for its ansible-core version and reads from that version's own source
/// what native results must look like (the command module's failure message, the
/// `_ansible_no_log` mark): one short process (~30 ms), once per job.
const CORE_PROBE: &str = r#"
import os, re, ansible, ansible.release as r
base = os.path.dirname(ansible.__file__)
def read(*p):
    try:
        with open(os.path.join(base, *p)) as f:
            return f.read()
    except OSError:
        return ""
m = re.search(r"if r\['rc'\] != 0:\s*\n\s*r\['msg'\] = (['\"])(.*?)\1", read("modules", "command.py"))
print(r.__version__)
print(m.group(2) if m else "non-zero return code")
print(int("def remove_internal_keys" in read("vars", "clean.py")))
slurp = read("modules", "slurp.py")
for e, default in (("ENOENT", "File not found: "), ("EACCES", "File is not readable: "),
                   ("EISDIR", "Source is a directory and must be a file: ")):
    m = re.search(r"errno\." + e + r":\s*\n\s*msg = f?[\"']([^\"'%{]*)", slurp)
    print(m.group(1) if m else default)
m = re.search(r"use (\\?[\"'])force=yes", read("modules", "file.py"))
print(m.group(1)[-1] if m else "'")
fetch = read("plugins", "action", "fetch.py")
print(int("'file': source, 'dest': dest" in fetch))
print(int("calculated dest" in fetch))
always = "_ansible_inject_invocation" not in read("plugins", "action", "__init__.py")
setting = os.environ.get("ANSIBLE_INJECT_INVOCATION")
if setting is None and not always:
    import configparser
    for cfg in (os.environ.get("ANSIBLE_CONFIG"), "ansible.cfg", os.path.expanduser("~/.ansible.cfg"),
                "/etc/ansible/ansible.cfg"):
        if cfg and os.path.isfile(cfg):
            p = configparser.ConfigParser(interpolation=None)
            try:
                p.read(cfg)
                setting = p.get("defaults", "inject_invocation", fallback=None)
            except Exception:
                pass
            break
print(int(always or str(setting).lower() in ("1", "true", "yes", "on", "y", "t")))
# The argument specs of the modules native code stands in for, from this version's source.
import ast, json
def lit(n):
    if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "dict" and not n.args:
        return {k.arg: lit(k.value) for k in n.keywords}
    if isinstance(n, ast.Dict):
        return {lit(k): lit(v) for k, v in zip(n.keys, n.values)}
    try:
        return ast.literal_eval(n)
    except ValueError:
        return None  # e.g. a fallback=(env_fallback, [...]): not a value of the argument
def spec(src, common):
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AnsibleModule":
            kws = {k.arg: k.value for k in node.keywords}
            out = lit(kws["argument_spec"])
            if "add_file_common_args" in kws and lit(kws["add_file_common_args"]):
                for k, v in common.items():
                    out.setdefault(k, v)
            return out
specs = {}
try:
    common = {}
    for node in ast.parse(read("module_utils", "basic.py")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FILE_COMMON_ARGUMENTS":
            common = lit(node.value)
    for m in ("ping", "slurp", "command", "file"):
        try:
            specs[m] = spec(read("modules", m + ".py"), common)
        except Exception:
            pass
except Exception:
    pass
print(json.dumps(specs))
print(int("Error executing command." in read("module_utils", "basic.py")))
"#;

/// A payload being built or built (or why it cannot be), shared by the hosts that need it.
type BuildSlot = Shared<Result<Arc<Built>, String>>;

/// The job's access to its EE's ansible-core: the helper (started on first use), the payloads
/// built so far and each host's Python interpreter.
pub struct AnsibleModules {
    spawn: HelperSpawn,
    verbosity: u8,
    helper: OnceCell<Result<Arc<Helper>, String>>,
    builds: Mutex<HashMap<String, BuildSlot>>,
    interpreters: Mutex<HashMap<String, Shared<String>>>,
    /// Per host: facts the package/service actions looked up (`ansible_pkg_mgr`, ...).
    facts: Mutex<HashMap<(String, String), String>>,
    /// Per host: the resident runner that runs payloads without a new interpreter each.
    residents: resident::Residents,
    /// The EE's ansible-core, as native modules need to know it (None: there is none).
    core: OnceCell<Option<Core>>,
    /// How the EE's ansible-core makes templates' `ansible_managed` (asked once).
    managed: OnceCell<crate::executor::modules::Managed>,
    /// rsync's way to the hosts for synchronize (started by its first call).
    rsync: OnceCell<Result<rsync_ssh::Bridge, String>>,
}

/// Action plugins whose work, for the arguments allowed here, is exactly running their module.
fn action_is_plain(action: &str, args: &Map<String, Value>) -> bool {
    match action {
        "ansible.builtin.command" | "ansible.builtin.shell" => true,
        "ansible.builtin.uri" => !args.contains_key("src"),
        // The plugin's remote_src defaults to yes; then it runs the module as given.
        "ansible.builtin.assemble" => {
            args.get("remote_src")
                .and_then(crate::boolean::ansible_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// How a call of `resolved` is handled when its Ansible behaviour lives partly in the
/// controller-side action plugin `action`, in a script author's words (`ftl2-runner doc`).
pub fn action_note(resolved: &str, action: &str) -> String {
    let port = actions::port(resolved);
    if port
        .as_ref()
        .is_some_and(|p| !matches!(p, actions::Port::Bridged(_)))
    {
        format!("its action plugin {action} runs as ftl2-runner's port of it")
    } else if action_bridge::BRIDGED.contains(&action) {
        format!(
            "ansible-core's own action plugin {action} runs, reaching the hosts and files only \
             through ftl2-runner"
        )
    } else if action_is_plain(action, &Map::new()) {
        "its action plugin only runs the module".into()
    } else {
        format!(
            "it needs Ansible's controller-side action plugin {action}, which ftl2-runner does \
             not run (it could reach controller files and lookups outside the sandbox): calls \
             fail without changing anything"
        )
    }
}

impl AnsibleModules {
    /// Access through the helper `spawn` describes; nothing starts until a module needs it.
    pub fn new(spawn: HelperSpawn, verbosity: u8) -> AnsibleModules {
        AnsibleModules {
            spawn,
            verbosity,
            helper: OnceCell::new(),
            builds: Mutex::new(HashMap::new()),
            interpreters: Mutex::new(HashMap::new()),
            facts: Mutex::new(HashMap::new()),
            residents: resident::Residents::default(),
            core: OnceCell::new(),
            managed: OnceCell::new(),
            rsync: OnceCell::new(),
        }
    }

    /// The EE's ansible-core (None without one), probed once per job without starting the
    /// helper, so jobs of native modules only stay fast.
    pub async fn core(&self) -> Option<&Core> {
        self.core
            .get_or_init(|| async {
                // Where the helper runs: the project's ansible.cfg is the job's configuration.
                let mut cmd = self.spawn.python_command(CORE_PROBE)?;
                let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
                    .await
                    .ok()?
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let mut lines = text.lines();
                let mut nums = lines.next()?.trim().split('.').map(|n| n.parse::<u32>());
                let version = (nums.next()?.ok()?, nums.next()?.ok()?);
                let mut text = || lines.next().map(String::from);
                let command_failed_msg = text()?;
                let marks_no_log = text()?.trim() == "1";
                let slurp_msgs = [text()?, text()?, text()?];
                let link_quote = text()?.chars().next().unwrap_or('\'');
                let core = Core {
                    version,
                    command_failed_msg,
                    marks_no_log,
                    slurp_msgs,
                    link_quote,
                    fetch_names_file: text()?.trim() == "1",
                    fetch_refuses_dir_dest: text()?.trim() == "1",
                    injects_invocation: text()?.trim() == "1",
                    specs: text()
                        .and_then(|l| serde_json::from_str(&l).ok())
                        .unwrap_or_default(),
                    exec_error_generic: text()?.trim() == "1",
                };
                crate::debugln!("ansible-core {version:?} in the EE (probed for native modules)");
                out.status.success().then_some(core)
            })
            .await
            .as_ref()
    }

    async fn helper(&self) -> Result<Arc<Helper>, String> {
        self.helper
            .get_or_init(|| async {
                let started = std::time::Instant::now();
                let h = Helper::start(&self.spawn).await.map(Arc::new);
                crate::debugln!(
                    "ansible module helper: {} in {:.3} s",
                    match &h {
                        Ok(h) => format!(
                            "ansible-core {} ({})",
                            h.info.ansible_version, h.info.python
                        ),
                        Err(e) => format!("unavailable: {e}"),
                    },
                    started.elapsed().as_secs_f64()
                );
                h
            })
            .await
            .clone()
    }

    /// The host's Python: `ansible_python_interpreter`, else the helper's own Python on the
    /// controller (Ansible's implicit localhost), else discovered once per host as Ansible's
    /// `auto_silent` does. The bool says whether this call discovered it.
    async fn interpreter(
        &self,
        ctx: &ModuleCtx<'_>,
        helper: &Helper,
    ) -> Result<(String, bool), Unreachable> {
        let vars = (ctx.vars)();
        if let Some(p) = vars
            .get("ansible_python_interpreter")
            .and_then(Value::as_str)
            .filter(|p| !p.starts_with("auto"))
        {
            return Ok((p.to_string(), false));
        }
        if matches!(ctx.conn, super::connection::Connection::Local(_)) {
            return Ok((helper.info.python.clone(), false));
        }
        let cell = {
            let mut m = self.interpreters.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(m.entry(ctx.host.to_string()).or_default())
        };
        let mut discovered = false;
        let found = cell
            .get_or_try_init(|| async {
                discovered = true;
                let candidates = match vars.get("ansible_interpreter_python_fallback") {
                    Some(list @ Value::Array(_)) => strings(Some(list)),
                    _ => helper.info.interpreter_fallback.clone(),
                };
                discover(ctx, &candidates).await
            })
            .await?
            .clone();
        Ok((found, discovered))
    }

    async fn build(
        &self,
        helper: &Helper,
        module: &str,
        args: &Map<String, Value>,
        interpreter: &str,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Arc<Built>, String> {
        // No host in the request: a payload does not depend on it, so one build serves every
        // host with the same arguments and interpreter (it used to be built once per host).
        let req = json!({
            "op": "build", "module": module, "args": args, "interpreter": interpreter,
            "check_mode": ctx.check_mode, "diff": ctx.diff, "no_log": ctx.no_log,
            "verbosity": self.verbosity, "host": "",
        });
        let key = req.to_string();
        let cell = {
            let mut m = self.builds.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(m.entry(key).or_default())
        };
        cell.get_or_init(|| async {
            let m = helper.request(req).await?;
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            use base64::Engine;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(text("payload"))
                .map_err(|e| format!("the module helper sent a bad payload: {e}"))?;
            Ok(Arc::new(Built {
                resolved: text("resolved"),
                payload,
                command: text("command"),
                interpreter: text("interpreter"),
                profile: m.get("profile").cloned().unwrap_or(Value::Null),
                action_plugin: m
                    .get("action_plugin")
                    .and_then(Value::as_str)
                    .map(String::from),
                warnings: strings(m.get("warnings")),
            }))
        })
        .await
        .clone()
    }

    /// Run a real Ansible module on the context's host; its result as Ansible reports it.
    /// `instead_of_native`: the call names a native module but uses what it does not handle
    /// (said so if the real module cannot run here).
    pub async fn run(
        &self,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        instead_of_native: Option<&str>,
    ) -> Result<Map<String, Value>, Unreachable> {
        // Boxed, so that a host's call that may come here (every one) does not carry this
        // path's state inline (connection/mod.rs: memory per host).
        Box::pin(self.run_inline(module, args, ctx, instead_of_native)).await
    }

    async fn run_inline(
        &self,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        instead_of_native: Option<&str>,
    ) -> Result<Map<String, Value>, Unreachable> {
        if let Some(what) = instead_of_native
            && let Err(why) = self.helper().await
        {
            return Ok(failed(format!(
                "ftl2-runner's native {module} module does not handle {what}, and the real \
                 module cannot run here: {why}"
            )));
        }
        match actions::port(module) {
            Some(port) => Box::pin(port.run(self, module, args, ctx)).await,
            None => {
                let caller = match instead_of_native {
                    Some(what) => Caller::InsteadOfNative(what),
                    None => Caller::Script,
                };
                self.run_module(module, args, ctx, caller).await
            }
        }
    }

    /// Run `module` as Ansible's `normal` action does.
    async fn run_module(
        &self,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
        caller: Caller<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        let helper = match self.helper().await {
            Ok(h) => h,
            Err(why) => {
                return Ok(failed(format!(
                    "ftl2-runner cannot run the Ansible module '{module}': {why}. Only the native \
                     modules are available: {}",
                    super::modules::NATIVE.join(", ")
                )));
            }
        };
        let (interpreter, discovered) = self.interpreter(ctx, &helper).await?;
        let built = match self.build(&helper, module, args, &interpreter, ctx).await {
            Ok(b) => b,
            Err(msg) => return Ok(failed(msg)),
        };
        if let Some(action) = &built.action_plugin
            && caller != Caller::Port
            && !action_is_plain(action, args)
        {
            if action_bridge::BRIDGED.contains(&action.as_str()) {
                return Box::pin(self.bridged_action(action, module, args, ctx)).await;
            }
            let because = match caller {
                Caller::InsteadOfNative(what) => {
                    format!("ftl2-runner's native {module} module does not handle {what}, and ")
                }
                _ => String::new(),
            };
            return Ok(failed(format!(
                "{because}{} needs Ansible's controller-side action plugin {action} for these \
                 arguments, which ftl2-runner does not run; nothing was changed on the host",
                built.resolved
            )));
        }
        let out = self
            .residents
            .run(
                ctx.conn,
                ctx.host,
                ctx.become_.as_ref(),
                &built.command,
                &built.payload,
            )
            .await?;
        let (mut result, parse_warnings) = match self
            .parse(
                &helper,
                &built.resolved,
                &out,
                &built.interpreter,
                &built.profile,
                ctx.no_log,
            )
            .await
        {
            Ok(r) => r,
            Err(msg) => return Ok(failed(msg)),
        };
        // The normal action's "hack to keep --verbose from showing all the setup module result".
        if built.resolved == "ansible.builtin.setup" {
            result.insert("_ansible_verbose_override".into(), json!(true));
        }
        let mut warnings = built.warnings.clone();
        warnings.extend(parse_warnings);
        add_warnings(&mut result, warnings);
        if discovered {
            note_discovered(&mut result, &interpreter);
        }
        Ok(result)
    }

    /// A module's output as the EE's ansible-core reports it (`_parse_returned_data` and
    /// TaskExecutor's defaults), with the parser's own warnings.
    async fn parse(
        &self,
        helper: &Helper,
        resolved: &str,
        out: &super::connection::CommandOutput,
        interpreter: &str,
        profile: &Value,
        no_log: bool,
    ) -> Result<(Map<String, Value>, Vec<String>), String> {
        let mut parsed = helper
            .request(json!({
                "op": "parse", "module": resolved,
                "stdout": String::from_utf8_lossy(&out.stdout),
                "stderr": String::from_utf8_lossy(&out.stderr),
                "rc": out.rc, "interpreter": interpreter, "profile": profile,
                "no_log": no_log,
            }))
            .await?;
        let mut result = match parsed.remove("result") {
            Some(Value::Object(r)) => r,
            _ => return Err("the module helper returned no result".into()),
        };
        // Internal to the action (module JSON or not); Ansible's callbacks never see it.
        result.remove("_ansible_parsed");
        // How this version's callback shows the module's deprecations (the tree prints them).
        if let Some(Value::Array(lines)) = parsed.remove("deprecation_lines")
            && !lines.is_empty()
        {
            result.insert(crate::tree::DEPRECATION_LINES.into(), Value::Array(lines));
        }
        Ok((result, strings(parsed.get("warnings"))))
    }

    /// A result with `changed_when`/`failed_when` applied by the EE's own ansible-core (None
    /// without one: the caller applies them itself).
    pub async fn when(
        &self,
        result: &Map<String, Value>,
        changed_when: Option<bool>,
        failed_when: Option<bool>,
        no_log: bool,
    ) -> Option<Map<String, Value>> {
        self.core().await?;
        let helper = self.helper().await.ok()?;
        let mut answer = helper
            .request(json!({
                "op": "when", "result": result, "changed_when": changed_when,
                "failed_when": failed_when, "no_log": no_log,
            }))
            .await
            .ok()?;
        match answer.remove("result") {
            Some(Value::Object(r)) => Some(r),
            _ => None,
        }
    }

    /// Whether the EE's ansible-core can run modules for this job (starts the helper).
    pub async fn available(&self) -> bool {
        self.helper().await.is_ok()
    }

    /// Whether ansible-core (or a collection) has a module by this name (`has_plugin`).
    async fn has_module(&self, module: &str) -> bool {
        let Ok(helper) = self.helper().await else {
            return false;
        };
        helper
            .request(json!({"op": "has", "module": module}))
            .await
            .is_ok_and(|m| m.get("has").and_then(Value::as_bool) == Some(true))
    }

    /// How templates get `ansible_managed` in this job: the EE's setting and precedence, else
    /// ansible-core's defaults.
    pub(crate) async fn managed(&self) -> crate::executor::modules::Managed {
        self.managed
            .get_or_init(|| async {
                let mut m = crate::executor::modules::Managed::default();
                if let Ok(h) = self.helper().await
                    && let Ok(answer) = h.request(json!({"op": "managed"})).await
                {
                    if let Some(f) = answer.get("format").and_then(Value::as_str) {
                        m.format = f.to_string();
                    }
                    if let Some(w) = answer.get("user_value_wins").and_then(Value::as_bool) {
                        m.user_value_wins = w;
                    }
                }
                m
            })
            .await
            .clone()
    }

    /// The result an action plugin's failure (`kind` "fail") or skip ("skip") has in the EE's
    /// ansible-core version, for a plugin that catches it into the result it returns.
    pub(crate) async fn action_error(
        &self,
        kind: &str,
        msg: &str,
        ctx: &ModuleCtx<'_>,
    ) -> Map<String, Value> {
        self.action_raised(kind, msg, ctx, false).await
    }

    /// As [`AnsibleModules::action_error`]; `escapes`: the plugin lets the exception out of
    /// its `run` (fetch does), which TaskExecutor of 2.15 passes on without its no_log mark.
    pub(crate) async fn action_raised(
        &self,
        kind: &str,
        msg: &str,
        ctx: &ModuleCtx<'_>,
        escapes: bool,
    ) -> Map<String, Value> {
        let answer = match self.helper().await {
            Ok(h) => {
                let req = json!({"op": "action_error", "kind": kind, "msg": msg,
                                 "no_log": ctx.no_log, "escapes": escapes});
                h.request(req).await
            }
            Err(e) => Err(e),
        };
        match answer.map(|mut m| m.remove("result")) {
            Ok(Some(Value::Object(r))) => r,
            _ if kind == "skip" => {
                super::modules::obj(json!({"skipped": true, "msg": msg, "changed": false}))
            }
            _ => failed(msg),
        }
    }

    /// A fact of the host, gathered once per job with `setup` as the package/service action
    /// plugins gather it (`gather_subset=!all`, `filter=<fact>`).
    async fn fact(
        &self,
        fact: &str,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Result<String, String>, Unreachable> {
        let key = (ctx.host.to_string(), fact.to_string());
        if let Some(v) = self
            .facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Ok(v.clone()));
        }
        if let Some(Value::String(v)) = (ctx.vars)().get(fact) {
            return Ok(Ok(v.clone()));
        }
        let args = super::modules::obj(json!({"gather_subset": "!all", "filter": fact}));
        let res = self
            .run_module("ansible.legacy.setup", &args, ctx, Caller::Port)
            .await?;
        if res.get("failed").and_then(Value::as_bool) == Some(true) {
            return Ok(Err(res
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("setup failed")
                .to_string()));
        }
        match res
            .get("ansible_facts")
            .and_then(|f| f.get(fact))
            .and_then(Value::as_str)
        {
            Some(v) => {
                self.facts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, v.to_string());
                Ok(Ok(v.to_string()))
            }
            None => Ok(Err(format!("setup did not report {fact}"))),
        }
    }
}

/// Report a discovered interpreter as Ansible does, in the first result that needed it.
fn note_discovered(result: &mut Map<String, Value>, interpreter: &str) {
    let facts = result
        .entry("ansible_facts")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(f) = facts {
        f.insert("discovered_interpreter_python".into(), json!(interpreter));
    }
}

/// Append warnings to a result's `warnings` list (created if absent).
fn add_warnings(result: &mut Map<String, Value>, warnings: Vec<String>) {
    if warnings.is_empty() {
        return;
    }
    let list = result
        .entry("warnings")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = list {
        a.extend(warnings.into_iter().map(Value::String));
    }
}

/// Ansible's interpreter discovery: the first of the candidates `command -v` finds, else
/// `/usr/bin/python3`.
async fn discover(ctx: &ModuleCtx<'_>, candidates: &[String]) -> Result<String, Unreachable> {
    let probes: Vec<String> = candidates
        .iter()
        .map(|c| format!("command -v {}", super::modules::quote(c)))
        .collect();
    let cmd = format!("echo FOUND; {}; echo ENDFOUND", probes.join("; "));
    let out = ctx.conn.exec(&cmd, None, None).await?;
    Ok(parse_discovery(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_discovery(stdout: &str) -> String {
    stdout
        .split_once("FOUND")
        .and_then(|(_, rest)| rest.split_once("ENDFOUND"))
        .and_then(|(found, _)| {
            found
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with('/'))
                .map(String::from)
        })
        .unwrap_or_else(|| "/usr/bin/python3".into())
}

/// The strings of a JSON array (anything else: none).
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_takes_the_first_path_found_else_the_fallback() {
        assert_eq!(
            parse_discovery("FOUND\n/usr/bin/python3.11\n/usr/bin/python3\nENDFOUND\n"),
            "/usr/bin/python3.11"
        );
        assert_eq!(
            parse_discovery("motd\nFOUND\nENDFOUND\n"),
            "/usr/bin/python3"
        );
        assert_eq!(parse_discovery("garbage"), "/usr/bin/python3");
    }

    #[test]
    fn only_plain_uses_of_action_plugins_run_the_bare_module() {
        let args = |v: Value| super::super::modules::obj(v);
        assert!(action_is_plain(
            "ansible.builtin.uri",
            &args(json!({"url": "http://x"}))
        ));
        assert!(!action_is_plain(
            "ansible.builtin.uri",
            &args(json!({"src": "f"}))
        ));
        assert!(action_is_plain(
            "ansible.builtin.assemble",
            &args(json!({"src": "d"}))
        ));
        assert!(!action_is_plain(
            "ansible.builtin.assemble",
            &args(json!({"remote_src": "no"}))
        ));
        assert!(!action_is_plain(
            "ansible.posix.synchronize",
            &args(json!({}))
        ));
    }
}
