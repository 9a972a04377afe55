//! Ansible's controller-side action plugins for `package` and `service`, ported: they choose the
//! backend module from the host's facts (`ansible_pkg_mgr`, `ansible_service_mgr`), gathered
//! with `setup` exactly as the plugins gather them (once per host per job here, where Ansible
//! gathers again on every task unless facts were gathered), then run that module.

use super::AnsibleModules;
use crate::executor::connection::Unreachable;
use crate::executor::modules::{ModuleCtx, failed};
use serde_json::{Map, Value, json};

/// A ported action plugin.
pub enum Port {
    /// `ansible.builtin.package`.
    Package,
    /// `ansible.builtin.service`.
    Service,
    /// `ansible.builtin.unarchive` (archives already on the host: `remote_src`).
    Unarchive,
    /// `ansible.builtin.async_status` (the async dir expanded on the host, the action's shape).
    AsyncStatus,
    /// `ansible.builtin.copy` of one file or `content` (see `copy_action.rs`).
    Copy,
    /// `ansible.builtin.template`: rendered here, then the copy action.
    Template,
    /// An action plugin with no module code of its own (`script`, `reboot`): ansible-core's own,
    /// run through the bridge (see `action_bridge.rs`).
    Bridged(&'static str),
    /// `ansible.posix.synchronize` (see `synchronize.rs`).
    Synchronize,
}

/// The port for `module`, if it names one.
pub fn port(module: &str) -> Option<Port> {
    if super::synchronize::is_synchronize(module) {
        return Some(Port::Synchronize);
    }
    let short = module
        .strip_prefix("ansible.builtin.")
        .or_else(|| module.strip_prefix("ansible.legacy."))
        .unwrap_or(module);
    match short {
        "package" => Some(Port::Package),
        "service" => Some(Port::Service),
        "unarchive" => Some(Port::Unarchive),
        "async_status" => Some(Port::AsyncStatus),
        "copy" => Some(Port::Copy),
        "template" => Some(Port::Template),
        "script" => Some(Port::Bridged("ansible.builtin.script")),
        "reboot" => Some(Port::Bridged("ansible.builtin.reboot")),
        _ => None,
    }
}

/// Package managers that are ansible-core modules (`PKG_MGRS` names with a builtin module):
/// run as `ansible.legacy.<name>`, as the plugin does, so a `library/` override still wins.
const BUILTIN_PKG_MGRS: &[&str] = &["apt", "dnf", "dnf5", "yum", "apk", "package"];
/// The same for service managers (the service plugin's `BUILTIN_SVC_MGR_MODULES`).
const BUILTIN_SVC_MGRS: &[&str] = &["openwrt_init", "service", "systemd", "sysvinit"];

impl Port {
    /// Run the action on the context's host.
    pub async fn run(
        &self,
        am: &AnsibleModules,
        module: &str,
        args: &Map<String, Value>,
        ctx: &ModuleCtx<'_>,
    ) -> Result<Map<String, Value>, Unreachable> {
        match self {
            Port::Package => package(am, args, ctx).await,
            Port::Service => service(am, args, ctx).await,
            Port::Unarchive => unarchive(am, module, args, ctx).await,
            Port::Bridged(plugin) => am.bridged_action(plugin, module, args, ctx).await,
            Port::AsyncStatus => am.async_status_action(args, ctx).await,
            Port::Copy => am.copy_action(args, ctx).await,
            Port::Template => am.template_action(args, ctx).await,
            Port::Synchronize => am.synchronize_action(args, ctx).await,
        }
    }
}

fn use_arg(args: &Map<String, Value>) -> String {
    args.get("use")
        .and_then(Value::as_str)
        .unwrap_or("auto")
        .to_string()
}

async fn package(
    am: &AnsibleModules,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let mut module = use_arg(args);
    if module == "auto" {
        module = match (ctx.vars)()
            .get("ansible_package_use")
            .and_then(Value::as_str)
        {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => match am.fact("ansible_pkg_mgr", ctx).await? {
                Ok(m) => m,
                Err(why) => {
                    return Ok(failed(format!(
                        "Failed to fetch ansible_pkg_mgr to determine the package action backend: {why}"
                    )));
                }
            },
        };
    }
    if module.is_empty() || module == "auto" {
        return Ok(failed(
            "Could not detect which package manager to use. Try gathering facts or setting the \"use\" option.",
        ));
    }
    if !am.has_module(&module).await {
        return Ok(failed(format!(
            "Could not find a matching action for the \"{module}\" package manager."
        )));
    }
    let mut new_args = args.clone();
    new_args.remove("use");
    let name = if BUILTIN_PKG_MGRS.contains(&module.as_str()) {
        format!("ansible.legacy.{module}")
    } else {
        module
    };
    am.run_module(&name, &new_args, ctx, super::Caller::Port)
        .await
}

async fn service(
    am: &AnsibleModules,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let mut module = use_arg(args).to_lowercase();
    if module == "auto" {
        let vars = (ctx.vars)();
        if let Some(m) = vars
            .get("ansible_facts")
            .and_then(|f| f.get("service_mgr"))
            .and_then(Value::as_str)
        {
            module = m.to_string();
        }
    }
    if module == "auto" {
        module = match am.fact("ansible_service_mgr", ctx).await? {
            Ok(m) => m,
            Err(_) => "auto".into(),
        };
    }
    if module.is_empty() || module == "auto" || !am.has_module(&module).await {
        module = "ansible.legacy.service".into();
    }
    let mut new_args = args.clone();
    new_args.remove("use");
    let mut warnings = Vec::new();
    if module == "systemd" {
        for unused in ["pattern", "runlevel", "sleep", "arguments", "args"] {
            if new_args.remove(unused).is_some() {
                warnings.push(json!(format!(
                    "Ignoring \"{unused}\" as it is not used in \"{module}\""
                )));
            }
        }
    }
    if BUILTIN_SVC_MGRS.contains(&module.as_str()) {
        module = format!("ansible.legacy.{module}");
    }
    let mut res = am
        .run_module(&module, &new_args, ctx, super::Caller::Port)
        .await?;
    if !warnings.is_empty()
        && let Value::Array(a) = res
            .entry("warnings")
            .or_insert_with(|| Value::Array(Vec::new()))
    {
        a.splice(0..0, warnings);
    }
    Ok(res)
}

/// The unarchive plugin's checks before it runs the module (`creates`, `dest` a directory), for
/// archives already on the host; an archive on the controller goes through the plugin itself.
async fn unarchive(
    am: &AnsibleModules,
    module: &str,
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    use crate::executor::modules::{bool_arg, quote, str_arg};
    let on_controller = match args.get("copy") {
        Some(copy) => crate::boolean::ansible_bool(copy) != Some(false),
        None => !bool_arg(args, "remote_src", false),
    };
    if on_controller {
        return am
            .bridged_action("ansible.builtin.unarchive", module, args, ctx)
            .await;
    }
    let mut args = args.clone();
    if let Some(copy) = args.remove("copy") {
        if args.contains_key("remote_src") {
            return Ok(am
                .action_error(
                    "fail",
                    "parameters are mutually exclusive: ('copy', 'remote_src')",
                    ctx,
                )
                .await);
        }
        let copy = crate::boolean::ansible_bool(&copy).unwrap_or(true);
        args.insert("remote_src".into(), json!(!copy));
    }
    let (Some(_src), Some(dest)) = (str_arg(&args, "src"), str_arg(&args, "dest")) else {
        return Ok(am
            .action_error("fail", "src (or content) and dest are required", ctx)
            .await);
    };
    // `~` expands on the host, as the plugin's _remote_expand_user does.
    let expand = |p: &str| match p.strip_prefix("~/") {
        Some(rest) => format!("~/{}", quote(rest)),
        None if p == "~" => "~".to_string(),
        None => quote(p),
    };
    if let Some(creates) = str_arg(&args, "creates").filter(|c| !c.is_empty()) {
        let out = ctx
            .sh(&format!("test -e {}", expand(&creates)), None)
            .await?;
        if out.rc == 0 {
            return Ok(am
                .action_error("skip", &format!("skipped, since {creates} exists"), ctx)
                .await);
        }
    }
    let out = ctx.sh(&format!("test -d {}", expand(&dest)), None).await?;
    if out.rc != 0 {
        return Ok(am
            .action_error(
                "fail",
                &format!("dest '{dest}' must be an existing dir"),
                ctx,
            )
            .await);
    }
    args.remove("decrypt");
    am.run_module("ansible.legacy.unarchive", &args, ctx, super::Caller::Port)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_answer_to_short_builtin_and_legacy_names_only() {
        assert!(matches!(port("package"), Some(Port::Package)));
        assert!(matches!(
            port("ansible.builtin.service"),
            Some(Port::Service)
        ));
        assert!(matches!(
            port("ansible.legacy.package"),
            Some(Port::Package)
        ));
        assert!(port("community.general.package").is_none());
        assert!(port("apt").is_none());
    }
}
