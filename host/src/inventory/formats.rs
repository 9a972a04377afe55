//! The inventory file formats: Ansible's `--list` JSON (also AWX's), YAML and INI, with host
//! ranges (`web[01:10]`) and ports (`host:2222`).

use super::Inventory;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

impl Inventory {
    /// Ansible's `--list` JSON: `{group: {hosts, children, vars}, _meta: {hostvars}}`.
    pub(super) fn merge_json(&mut self, v: &Value) -> Result<()> {
        let Value::Object(top) = v else {
            bail!("the inventory JSON is not an object")
        };
        for (name, body) in top {
            if name == "_meta" {
                continue;
            }
            match body {
                Value::Array(hosts) => {
                    for h in hosts {
                        self.add_to_group(name, &host_name(h)?);
                    }
                }
                Value::Object(g) => {
                    self.group(name);
                    if let Some(hosts) = g.get("hosts") {
                        match hosts {
                            Value::Array(list) => {
                                for h in list {
                                    self.add_to_group(name, &host_name(h)?);
                                }
                            }
                            Value::Object(map) => {
                                for (h, vars) in map {
                                    self.add_to_group(name, h);
                                    if let Value::Object(vars) = vars {
                                        self.host_vars.get_mut(h).unwrap().extend(vars.clone());
                                    }
                                }
                            }
                            Value::Null => {}
                            _ => bail!("group {name}: hosts must be a list"),
                        }
                    }
                    if let Some(Value::Array(children)) = g.get("children") {
                        for c in children {
                            self.add_child(
                                name,
                                c.as_str().ok_or_else(|| {
                                    anyhow!("group {name}: child names must be strings")
                                })?,
                            );
                        }
                    }
                    if let Some(Value::Object(vars)) = g.get("vars") {
                        self.group(name).vars.extend(vars.clone());
                    }
                }
                Value::Null => {
                    self.group(name);
                }
                _ => bail!("group {name} must be an object or a list"),
            }
        }
        if let Some(Value::Object(hv)) = top.get("_meta").and_then(|m| m.get("hostvars")) {
            for (h, vars) in hv {
                self.add_host(h);
                if let Value::Object(vars) = vars {
                    self.host_vars.get_mut(h).unwrap().extend(vars.clone());
                }
            }
        }
        Ok(())
    }

    /// The YAML inventory format: nested `hosts`, `vars`, `children` under group names.
    pub(super) fn merge_yaml(&mut self, v: &Value) -> Result<()> {
        let Value::Object(top) = v else {
            if v.is_null() {
                return Ok(());
            }
            bail!("a YAML inventory must be a mapping of groups")
        };
        for (name, body) in top {
            self.merge_yaml_group(name, body)?;
        }
        Ok(())
    }

    fn merge_yaml_group(&mut self, name: &str, body: &Value) -> Result<()> {
        self.group(name);
        let Value::Object(g) = body else {
            if body.is_null() {
                return Ok(());
            }
            bail!("group {name} must be a mapping");
        };
        for key in g.keys() {
            if !matches!(key.as_str(), "hosts" | "vars" | "children") {
                bail!("group {name}: unknown key {key:?} (expected hosts, vars, children)");
            }
        }
        if let Some(hosts) = g.get("hosts") {
            match hosts {
                Value::Object(map) => {
                    for (pattern, vars) in map {
                        for h in expand_host_range(pattern)? {
                            self.add_to_group(name, &h);
                            if let Value::Object(vars) = vars {
                                self.host_vars.get_mut(&h).unwrap().extend(vars.clone());
                            }
                        }
                        self.check_host_cap()?;
                    }
                }
                Value::Null => {}
                _ => bail!("group {name}: hosts must be a mapping of host names"),
            }
        }
        if let Some(vars) = g.get("vars") {
            match vars {
                Value::Object(vars) => self.group(name).vars.extend(vars.clone()),
                Value::Null => {}
                _ => bail!("group {name}: vars must be a mapping"),
            }
        }
        if let Some(children) = g.get("children") {
            match children {
                Value::Object(map) => {
                    for (child, cbody) in map {
                        self.add_child(name, child);
                        self.merge_yaml_group(child, cbody)?;
                    }
                }
                Value::Null => {}
                _ => bail!("group {name}: children must be a mapping"),
            }
        }
        Ok(())
    }

    /// The INI format: `[group]`, `[group:vars]`, `[group:children]`, `host k=v`, ranges.
    pub(super) fn merge_ini(&mut self, text: &str) -> Result<()> {
        #[derive(PartialEq)]
        enum Section {
            Hosts,
            Vars,
            Children,
        }
        let mut group = "ungrouped".to_string();
        let mut section = Section::Hosts;
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                let Some(inner) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else {
                    bail!("line {lineno}: malformed section header {line:?}");
                };
                if !line.contains(']') {
                    bail!("line {lineno}: malformed section header {line:?}");
                }
                let (name, kind) = match inner.split_once(':') {
                    Some((n, "vars")) => (n, Section::Vars),
                    Some((n, "children")) => (n, Section::Children),
                    Some((_, other)) => {
                        bail!("line {lineno}: unknown section type {other:?} in {line:?}")
                    }
                    None => (inner, Section::Hosts),
                };
                if name.is_empty() || name.contains(char::is_whitespace) {
                    bail!("line {lineno}: invalid group name {name:?}");
                }
                group = name.to_string();
                section = kind;
                self.group(&group);
                continue;
            }
            match section {
                Section::Hosts => {
                    let words = shlex::split(line)
                        .ok_or_else(|| anyhow!("line {lineno}: unbalanced quotes in {line:?}"))?;
                    let Some((first, rest)) = words.split_first() else {
                        continue;
                    };
                    let mut vars = Map::new();
                    for w in rest {
                        let (k, v) = w.split_once('=').ok_or_else(|| {
                            anyhow!(
                                "line {lineno}: expected key=value after the host name, got {w:?}"
                            )
                        })?;
                        vars.insert(k.to_string(), ini_value(v));
                    }
                    let (pattern, port) = split_port(first);
                    for h in expand_host_range(pattern).with_context(|| format!("line {lineno}"))? {
                        self.add_to_group(&group, &h);
                        let hv = self.host_vars.get_mut(&h).unwrap();
                        if let Some(p) = port {
                            hv.insert("ansible_port".into(), Value::from(p));
                        }
                        hv.extend(vars.clone());
                    }
                    self.check_host_cap()
                        .with_context(|| format!("line {lineno}"))?;
                }
                Section::Vars => {
                    let (k, v) = line.split_once('=').ok_or_else(|| {
                        anyhow!("line {lineno}: expected key=value in [{group}:vars], got {line:?}")
                    })?;
                    self.group(&group)
                        .vars
                        .insert(k.trim().to_string(), ini_value(v.trim()));
                }
                Section::Children => {
                    if line.contains(char::is_whitespace) {
                        bail!(
                            "line {lineno}: a [{group}:children] line must be one group name, got {line:?}"
                        );
                    }
                    self.add_child(&group, line);
                }
            }
        }
        Ok(())
    }
}

fn host_name(v: &Value) -> Result<String> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| anyhow!("host names must be strings, got {v}"))
}

/// `host:2222` -> (host, Some(2222)); `db-[a:c]:2222` too; IPv6 addresses are left alone.
fn split_port(s: &str) -> (&str, Option<u16>) {
    if let Some((h, p)) = s.rsplit_once(':')
        && let Ok(port) = p.parse()
    {
        // Outside `[...]` ranges the host part must have no colon, or it is an IPv6 address.
        let mut depth = 0;
        let bare_colon = h.chars().any(|c| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            c == ':' && depth == 0
        });
        if !bare_colon {
            return (h, Some(port));
        }
    }
    (s, None)
}

/// INI values: numbers, booleans and JSON-ish literals become typed, like Ansible's INI parser.
fn ini_value(v: &str) -> Value {
    if let Ok(parsed) = serde_json::from_str::<Value>(v)
        && !matches!(parsed, Value::String(_))
    {
        return parsed;
    }
    match v {
        "True" | "true" | "yes" => return Value::Bool(true),
        "False" | "false" | "no" => return Value::Bool(false),
        _ => {}
    }
    let unquoted = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    Value::String(unquoted.to_string())
}

/// `web[01:10].example.com` -> web01..web10; `db-[a:c]` -> db-a, db-b, db-c; `x[1:9:2]` steps.
pub fn expand_host_range(pattern: &str) -> Result<Vec<String>> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let Some(close_rel) = pattern[open..].find(']') else {
        bail!("unclosed '[' in host range {pattern:?}");
    };
    let close = open + close_rel;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = range.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        // Not a range (e.g. an IPv6 literal): leave it.
        return Ok(vec![pattern.to_string()]);
    }
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .map_err(|_| anyhow!("bad step in host range {pattern:?}"))?,
        None => 1,
    };
    if step == 0 {
        bail!("zero step in host range {pattern:?}");
    }
    let (a, b) = (parts[0], parts[1]);
    let mut out = Vec::new();
    let tails = expand_host_range(tail)?;
    // Counted before anything is made: `count` values of this range, each with every tail.
    let check_size = |count: u64| -> Result<()> {
        let (total, cap) = (count.saturating_mul(tails.len() as u64), super::max_hosts());
        if total > cap as u64 {
            bail!(
                "host range {pattern:?} expands to {total} hosts, more than the cap of {cap} \
                 (FTL2_INVENTORY_MAX_HOSTS)"
            );
        }
        Ok(())
    };
    if let (Ok(start), Ok(end)) = (a.parse::<u64>(), b.parse::<u64>()) {
        if start > end {
            bail!("host range {pattern:?} runs backwards");
        }
        check_size((end - start) / step as u64 + 1)?;
        let width = if a.starts_with('0') && a.len() > 1 {
            a.len()
        } else {
            0
        };
        for n in (start..=end).step_by(step) {
            for t in &tails {
                out.push(format!("{head}{n:0width$}{t}"));
            }
        }
    } else if a.len() == 1 && b.len() == 1 && a.is_ascii() && b.is_ascii() {
        let (s, e) = (a.as_bytes()[0], b.as_bytes()[0]);
        if s > e {
            bail!("host range {pattern:?} runs backwards");
        }
        check_size(u64::from(e - s) / step as u64 + 1)?;
        for c in (s..=e).step_by(step) {
            for t in &tails {
                out.push(format!("{head}{}{t}", c as char));
            }
        }
    } else {
        bail!("invalid host range {pattern:?}");
    }
    Ok(out)
}

pub(super) fn looks_like_yaml_inventory(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    matches!(first, Some(l) if l == "---" || (l.ends_with(':') && !l.starts_with('[') && !l.contains(' ')))
}
