//! `ping`, `wait_for_connection` and `setup` (a useful subset of Ansible's facts).

use super::{ModuleCtx, failed, obj, text};
use crate::executor::connection::{Connection, Unreachable};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// `ping`: the host answers (and, with become, become works).
pub async fn ping(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let data = super::str_arg(args, "data").unwrap_or_else(|| "pong".into());
    // Over SSH (or with become) a round trip proves the host; the controller itself always answers.
    if !matches!(ctx.conn, Connection::Local(_)) || ctx.become_.is_some() {
        let out = ctx.sh("true", None).await?;
        if out.rc != 0 {
            return Ok(failed(format!("ping failed: {}", text(&out.stderr).trim())));
        }
    }
    if data == "crash" {
        return Ok(failed("boom"));
    }
    Ok(obj(json!({"changed": false, "ping": data})))
}

fn secs_arg(args: &Map<String, Value>, key: &str, default: u64) -> u64 {
    super::str_arg(args, key)
        .and_then(|v| v.parse::<f64>().ok())
        .map(|f| f.max(0.0) as u64)
        .unwrap_or(default)
}

/// `wait_for_connection`: retry until the host answers or the timeout passes.
pub async fn wait_for_connection(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let timeout = Duration::from_secs(secs_arg(args, "timeout", 600));
    let delay = Duration::from_secs(secs_arg(args, "delay", 0));
    let sleep = Duration::from_secs(secs_arg(args, "sleep", 1).max(1));
    let started = Instant::now();
    tokio::time::sleep(delay).await;
    let mut last;
    loop {
        match ctx
            .conn
            .exec(
                "true",
                None,
                Some(Duration::from_secs(secs_arg(args, "connect_timeout", 5))),
            )
            .await
        {
            Ok(out) if out.rc == 0 => {
                let elapsed = started.elapsed().as_secs();
                return Ok(obj(json!({"changed": false, "elapsed": elapsed})));
            }
            Ok(out) => last = text(&out.stderr).trim().to_string(),
            Err(e) => {
                last = e.0;
                ctx.conn.reset().await;
            }
        }
        if started.elapsed() >= timeout {
            let mut m = failed(format!(
                "timed out waiting for connection to become available: {last}"
            ));
            m.insert("elapsed".into(), json!(started.elapsed().as_secs()));
            return Ok(m);
        }
        tokio::time::sleep(sleep).await;
    }
}

/// The remote half of `setup`: one POSIX shell script printing `key=value` lines.
const FACTS_SCRIPT: &str = r#"
echo "hostname=$(hostname 2>/dev/null || uname -n)"
echo "fqdn=$(hostname -f 2>/dev/null || hostname 2>/dev/null || uname -n)"
echo "kernel=$(uname -r)"
echo "kernel_version=$(uname -v)"
echo "machine=$(uname -m)"
echo "system=$(uname -s)"
if [ -r /etc/os-release ]; then sed -n 's/^\(ID\|VERSION_ID\|VERSION_CODENAME\|PRETTY_NAME\|ID_LIKE\|NAME\)=/os_\1=/p' /etc/os-release; fi
echo "memtotal_kb=$(awk '/^MemTotal:/{print $2}' /proc/meminfo 2>/dev/null)"
echo "memfree_kb=$(awk '/^MemFree:/{print $2}' /proc/meminfo 2>/dev/null)"
echo "swaptotal_kb=$(awk '/^SwapTotal:/{print $2}' /proc/meminfo 2>/dev/null)"
echo "vcpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
echo "cores=$(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
echo "processor=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)"
echo "user_id=$(id -un)"
echo "user_uid=$(id -u)"
echo "user_dir=$HOME"
echo "user_shell=$SHELL"
echo "python=$(command -v python3 2>/dev/null)"
echo "uptime=$(cut -d. -f1 /proc/uptime 2>/dev/null)"
echo "epoch=$(date +%s)"
route=$(ip -4 route get 1.1.1.1 2>/dev/null | head -n1)
echo "default_iface=$(echo "$route" | sed -n 's/.* dev \([^ ]*\).*/\1/p')"
echo "default_addr=$(echo "$route" | sed -n 's/.* src \([^ ]*\).*/\1/p')"
echo "default_gw=$(echo "$route" | sed -n 's/.* via \([^ ]*\).*/\1/p')"
ip -4 -o addr show 2>/dev/null | awk '{split($4,a,"/"); print "ipv4=" a[1] " " $2}'
"#;

/// `setup`: gather facts (hostname, OS, distribution, kernel, architecture, IPv4, memory, CPUs).
pub async fn setup(
    args: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<Map<String, Value>, Unreachable> {
    let out = ctx.sh(FACTS_SCRIPT, None).await?;
    if out.rc != 0 && out.stdout.is_empty() {
        return Ok(failed(format!(
            "cannot gather facts: {}",
            text(&out.stderr).trim()
        )));
    }
    let mut kv: Vec<(String, String)> = Vec::new();
    for line in text(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.push((k.to_string(), v.trim().trim_matches('"').to_string()));
        }
    }
    let get = |k: &str| {
        kv.iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let num = |k: &str| get(k).parse::<u64>().ok();
    let distro_id = get("os_ID");
    let distribution = match distro_id.as_str() {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "rhel" => "RedHat",
        "centos" => "CentOS",
        "fedora" => "Fedora",
        "rocky" => "Rocky",
        "almalinux" => "AlmaLinux",
        "alpine" => "Alpine",
        "arch" => "Archlinux",
        "opensuse-leap" | "sles" | "opensuse" => "SUSE",
        "amzn" => "Amazon",
        "" => "",
        other => other,
    }
    .to_string();
    let os_family = match distro_id.as_str() {
        "debian" | "ubuntu" => "Debian",
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "amzn" | "ol" => "RedHat",
        "alpine" => "Alpine",
        "arch" => "Archlinux",
        "opensuse-leap" | "sles" | "opensuse" => "Suse",
        _ => "",
    };
    let os_family = if os_family.is_empty() {
        get("os_ID_LIKE")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    } else {
        os_family.to_string()
    };
    let version = get("os_VERSION_ID");
    let ipv4: Vec<(String, String)> = kv
        .iter()
        .filter(|(k, _)| k == "ipv4")
        .filter_map(|(_, v)| {
            v.split_once(' ')
                .map(|(a, i)| (a.to_string(), i.to_string()))
        })
        .collect();
    let all_ipv4: Vec<&str> = ipv4
        .iter()
        .filter(|(a, _)| !a.starts_with("127."))
        .map(|(a, _)| a.as_str())
        .collect();
    let mut facts = Map::new();
    let mut put = |k: &str, v: Value| {
        facts.insert(format!("ansible_{k}"), v);
    };
    put(
        "hostname",
        json!(get("hostname").split('.').next().unwrap_or_default()),
    );
    put("nodename", json!(get("hostname")));
    put("fqdn", json!(get("fqdn")));
    put("system", json!(get("system")));
    put("kernel", json!(get("kernel")));
    put("kernel_version", json!(get("kernel_version")));
    put("architecture", json!(get("machine")));
    put("machine", json!(get("machine")));
    put("distribution", json!(distribution));
    put("distribution_version", json!(version));
    put(
        "distribution_major_version",
        json!(version.split('.').next().unwrap_or_default()),
    );
    put("distribution_release", json!(get("os_VERSION_CODENAME")));
    put("os_family", json!(os_family));
    put("memtotal_mb", json!(num("memtotal_kb").map(|k| k / 1024)));
    put("memfree_mb", json!(num("memfree_kb").map(|k| k / 1024)));
    put("swaptotal_mb", json!(num("swaptotal_kb").map(|k| k / 1024)));
    put("processor_vcpus", json!(num("vcpus")));
    put("processor_nproc", json!(num("vcpus")));
    put("processor_count", json!(num("cores").map(|_| 1)));
    put("processor_cores", json!(num("cores")));
    put("processor", json!([get("processor")]));
    put("user_id", json!(get("user_id")));
    put("user_uid", json!(num("user_uid")));
    put("user_dir", json!(get("user_dir")));
    put("user_shell", json!(get("user_shell")));
    put("python", json!({"executable": get("python")}));
    put("uptime_seconds", json!(num("uptime")));
    put("all_ipv4_addresses", json!(all_ipv4));
    put(
        "default_ipv4",
        json!({"address": get("default_addr"), "interface": get("default_iface"), "gateway": get("default_gw")}),
    );
    put("date_time", json!({"epoch": get("epoch")}));
    facts.insert(
        "gather_subset".into(),
        json!(["min", "hardware", "network"]),
    );
    facts.insert("module_setup".into(), json!(true));
    // `filter=ansible_distribution*` as in Ansible.
    if let Some(filter) = super::str_arg(args, "filter")
        && let Ok(pat) = glob::Pattern::new(&filter)
    {
        facts.retain(|k, _| pat.matches(k));
    }
    Ok(obj(json!({"ansible_facts": facts, "changed": false})))
}
