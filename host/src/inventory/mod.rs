//! Inventories with Ansible's semantics: AWX's inventory script (parsed, never executed), Ansible
//! JSON, INI and YAML files, inventory directories, `group_vars/` and `host_vars/`, child groups,
//! variable precedence (all < parent < child < host) and host patterns (`a:b`, `a:&b`, `a:!b`,
//! wildcards, `~regex`), with the job's `--limit` applied to every pattern.

mod formats;
mod patterns;
mod scripts;

pub use formats::expand_host_range;
pub use scripts::awx_script_json;

use formats::looks_like_yaml_inventory;
use scripts::{run_inventory_script, scripts_allowed};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Most hosts an inventory may hold after range expansion (`FTL2_INVENTORY_MAX_HOSTS`, default
/// 100,000): `web[0:99999999]` must be an error, not an out-of-memory kill.
pub fn max_hosts() -> usize {
    crate::limits::env_cap("FTL2_INVENTORY_MAX_HOSTS", 100_000)
}

/// Largest inventory or vars file read (`FTL2_INVENTORY_MAX_BYTES`, default 64 MiB); an
/// `inventory` of `/dev/zero` ends here.
fn max_bytes() -> usize {
    crate::limits::env_cap("FTL2_INVENTORY_MAX_BYTES", 64 << 20)
}

/// A file's bytes, at most [`max_bytes`] of them (else an error naming the cap).
fn read_capped(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let cap = max_bytes();
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(cap as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > cap {
        bail!(
            "{} is larger than {cap} bytes, the cap on inventory files (FTL2_INVENTORY_MAX_BYTES)",
            path.display()
        );
    }
    Ok(bytes)
}

/// A group: its direct hosts, child groups and variables.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Hosts listed directly in the group, in order.
    pub hosts: Vec<String>,
    /// Child group names.
    pub children: Vec<String>,
    /// The group's own variables.
    pub vars: Map<String, Value>,
}

/// The job's inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Host names in the order they were first seen (Ansible's inventory order).
    pub hosts: Vec<String>,
    /// Each host's own variables.
    pub host_vars: BTreeMap<String, Map<String, Value>>,
    /// Groups by name (`all` and `ungrouped` always exist).
    pub groups: BTreeMap<String, Group>,
    /// Hosts added by the script at run time (removable again).
    pub added: BTreeSet<String>,
    /// host -> its groups from `all` down to the most specific, computed once per change: AWX
    /// inventories reach thousands of hosts, and variables are merged per host.
    member_of: BTreeMap<String, Vec<String>>,
    /// group -> its hosts with its descendants', in inventory order (the same index, inverted).
    members: BTreeMap<String, Vec<String>>,
    /// (group, host) for every host listed directly in a group: adding a host to a group of
    /// 100,000 must not scan them all.
    listed: std::collections::HashSet<(String, String)>,
}

impl Inventory {
    /// An inventory with no hosts.
    pub fn empty() -> Inventory {
        let mut inv = Inventory::default();
        inv.groups.insert("all".into(), Group::default());
        inv.groups.insert("ungrouped".into(), Group::default());
        inv
    }

    /// Load the inventory at `path` (a file or a directory of inventory sources).
    pub fn load(path: &Path) -> Result<Inventory> {
        let mut inv = Inventory::empty();
        if path.is_dir() {
            let entries = sorted_entries(path)
                .with_context(|| format!("cannot read inventory directory {}", path.display()))?;
            for p in entries {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if p.is_dir()
                    || name.starts_with('.')
                    || name.ends_with('~')
                    || [".orig", ".ini~", ".retry", ".pyc", ".cfg"]
                        .iter()
                        .any(|s| name.ends_with(s))
                {
                    continue;
                }
                inv.load_file(&p)?;
            }
            inv.load_vars_dirs(path)?;
        } else {
            inv.load_file(path)?;
            if let Some(parent) = path.parent() {
                inv.load_vars_dirs(parent)?;
            }
        }
        inv.finish();
        Ok(inv)
    }

    fn load_file(&mut self, path: &Path) -> Result<()> {
        let bytes = read_capped(path).context("cannot read the inventory")?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("inventory {} is not UTF-8 text", path.display()))?;
        let shown = path.display().to_string();
        if text.starts_with("#!") {
            let json = match awx_script_json(&text) {
                Ok(j) => j,
                Err(e) if !scripts_allowed() => {
                    return Err(e).with_context(|| format!("inventory script {shown} (set FTL2_ALLOW_INVENTORY_SCRIPTS=1 in the EE to run such scripts with --list)"));
                }
                Err(_) => run_inventory_script(path)
                    .with_context(|| format!("inventory script {shown}"))?,
            };
            return self
                .merge_json(&json)
                .with_context(|| format!("inventory script {shown}"));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        self.merge_text(&shown, ext, &text)
    }

    /// Merge an inventory source's text (JSON, YAML or INI; `ext` is its file extension).
    fn merge_text(&mut self, shown: &str, ext: &str, text: &str) -> Result<()> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let v: Value = serde_json::from_str(text)
                .with_context(|| format!("inventory {shown} is not valid JSON"))?;
            return self
                .merge_json(&v)
                .with_context(|| format!("inventory {shown}"));
        }
        if matches!(ext, "yml" | "yaml") || looks_like_yaml_inventory(text) {
            let v = crate::job::parse_yaml_or_json(text)
                .with_context(|| format!("inventory {shown}"))?;
            return self
                .merge_yaml(&v)
                .with_context(|| format!("inventory {shown}"));
        }
        self.merge_ini(text)
            .with_context(|| format!("inventory {shown}"))
    }

    /// The inventory a script gives `automation(inventory="file")`, from the text the sandbox read
    /// (so the host opens nothing the script could not): the file and the `group_vars/` and
    /// `host_vars/` files beside it.
    pub fn from_script(src: &ScriptInventory) -> Result<Inventory> {
        let cap = max_bytes();
        let total = src.text.len()
            + src
                .group_vars
                .iter()
                .chain(&src.host_vars)
                .flat_map(|(_, texts)| texts)
                .map(String::len)
                .sum::<usize>();
        if total > cap {
            bail!(
                "inventory {} and its variable files are larger than {cap} bytes, the cap on inventory files (FTL2_INVENTORY_MAX_BYTES)",
                src.name
            );
        }
        if src.text.starts_with("#!") {
            bail!(
                "inventory {}: an executable inventory cannot be given to automation() (its program would run outside the sandbox)",
                src.name
            );
        }
        let mut inv = Inventory::empty();
        let ext = Path::new(&src.name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        inv.merge_text(&src.name, ext, &src.text)?;
        for (kind, list, is_group) in [
            ("group_vars", &src.group_vars, true),
            ("host_vars", &src.host_vars, false),
        ] {
            for (name, texts) in list {
                for text in texts {
                    let vars = vars_from_text(text, &format!("{kind}/{name}"))?;
                    inv.apply_vars_file(is_group, name, vars);
                }
            }
        }
        inv.finish();
        inv.check_host_cap()?;
        Ok(inv)
    }

    /// Add another inventory's hosts, groups and variables to this one, as Ansible merges several
    /// inventory sources (the later source's variables win); its hosts count as added at run time
    /// (`remove_host` may remove them). Returns the hosts it brought.
    pub fn merge(&mut self, other: Inventory) -> Result<Vec<String>> {
        for (name, g) in &other.groups {
            self.group(name).vars.extend(g.vars.clone());
            for c in &g.children {
                self.add_child(name, c);
            }
        }
        for h in &other.hosts {
            if !self.host_vars.contains_key(h) {
                self.added.insert(h.clone());
            }
            self.add_host(h);
            if let Some(v) = other.host_vars.get(h) {
                self.host_vars.get_mut(h).unwrap().extend(v.clone());
            }
        }
        for (name, g) in &other.groups {
            if name == "all" || name == "ungrouped" {
                continue;
            }
            for h in &g.hosts {
                self.add_to_group(name, h);
            }
        }
        self.finish();
        self.check_host_cap()?;
        Ok(other.hosts)
    }

    /// An error once the inventory holds more hosts than [`max_hosts`].
    fn check_host_cap(&self) -> Result<()> {
        let cap = max_hosts();
        if self.hosts.len() > cap {
            bail!("the inventory has more than {cap} hosts, the cap (FTL2_INVENTORY_MAX_HOSTS)");
        }
        Ok(())
    }

    fn add_host(&mut self, name: &str) {
        if !self.host_vars.contains_key(name) {
            self.hosts.push(name.to_string());
            self.host_vars.insert(name.to_string(), Map::new());
        }
    }

    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    fn add_to_group(&mut self, group: &str, host: &str) {
        self.add_host(host);
        if self.listed.insert((group.to_string(), host.to_string())) {
            self.group(group).hosts.push(host.to_string());
        }
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.group(child);
        let g = self.group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
    }

    /// `group_vars/<group>[.yml|.yaml|.json|/]` and `host_vars/<host>...` beside the inventory.
    fn load_vars_dirs(&mut self, dir: &Path) -> Result<()> {
        for (kind, is_group) in [("group_vars", true), ("host_vars", false)] {
            let base = dir.join(kind);
            if !base.is_dir() {
                continue;
            }
            for p in sorted_entries(&base)? {
                let fname = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if fname.starts_with('.') {
                    continue;
                }
                let name = ["yml", "yaml", "json"]
                    .iter()
                    .find_map(|e| fname.strip_suffix(&format!(".{e}")))
                    .unwrap_or(&fname)
                    .to_string();
                let vars = read_vars(&p)?;
                self.apply_vars_file(is_group, &name, vars);
            }
        }
        Ok(())
    }

    /// A `group_vars/<name>` or `host_vars/<name>` file's variables: a group's, or a host's
    /// (over its inline inventory variables, as in Ansible; a file for no such host is unused).
    fn apply_vars_file(&mut self, is_group: bool, name: &str, vars: Map<String, Value>) {
        if is_group {
            self.group(name).vars.extend(vars);
        } else if let Some(hv) = self.host_vars.get_mut(name) {
            hv.extend(vars);
        }
    }

    /// Make `all` and `ungrouped` right: every host is in `all`; hosts in no other group are ungrouped.
    fn finish(&mut self) {
        let mut grouped = BTreeSet::new();
        for (name, g) in &self.groups {
            if name != "all" && name != "ungrouped" {
                grouped.extend(g.hosts.iter().cloned());
            }
        }
        let hosts = self.hosts.clone();
        let ungrouped: Vec<String> = hosts
            .iter()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        self.group("ungrouped").hosts = ungrouped;
        let has_parent: BTreeSet<&String> = self
            .groups
            .values()
            .flat_map(|g| g.children.iter())
            .collect();
        let children: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != "all" && !has_parent.contains(g))
            .cloned()
            .collect();
        let all = self.group("all");
        for c in children {
            if !all.children.contains(&c) {
                all.children.push(c);
            }
        }
        self.index_memberships();
    }

    /// Each host's groups (its own and their ancestors), ordered by depth: linear in the size of
    /// the inventory and of the answer, however the groups nest or overlap.
    fn index_memberships(&mut self) {
        let depth = self.depths();
        let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, g) in &self.groups {
            for c in &g.children {
                parents.entry(c).or_default().push(name);
            }
            for h in &g.hosts {
                direct.entry(h).or_default().push(name);
            }
        }
        let mut member_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &self.hosts {
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = direct.get(h.as_str()).cloned().unwrap_or_default();
            todo.push("all");
            while let Some(g) = todo.pop() {
                if seen.insert(g)
                    && let Some(ps) = parents.get(g)
                {
                    todo.extend(ps);
                }
            }
            let mut groups: Vec<String> = seen.into_iter().map(String::from).collect();
            groups.sort_by_cached_key(|g| (depth.get(g).copied().unwrap_or(1), g.clone()));
            member_of.insert(h.clone(), groups);
        }
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &self.hosts {
            for g in member_of.get(h).into_iter().flatten() {
                members.entry(g.clone()).or_default().push(h.clone());
            }
        }
        self.member_of = member_of;
        self.members = members;
    }

    /// Every host of `group` including its descendants', in inventory order.
    pub fn group_hosts(&self, group: &str) -> Vec<String> {
        if group == "all" {
            return self.hosts.clone();
        }
        self.members.get(group).cloned().unwrap_or_default()
    }

    /// Groups a host belongs to, ordered from `all` down to the most specific (depth, then name).
    pub fn host_groups(&self, host: &str) -> Vec<String> {
        self.member_of.get(host).cloned().unwrap_or_default()
    }

    /// Each group's depth below `all` (the longest way down, as Ansible's group depth), in one
    /// pass over the groups reachable from `all` in topological order (groups in a cycle, which
    /// Ansible refuses, keep the depth reached before it).
    fn depths(&self) -> BTreeMap<String, usize> {
        let children = |g: &str| {
            self.groups
                .get(g)
                .map(|g| g.children.as_slice())
                .unwrap_or(&[])
        };
        let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo = vec!["all"];
        while let Some(g) = todo.pop() {
            if !seen.insert(g) {
                continue;
            }
            for c in children(g) {
                *indegree.entry(c).or_default() += 1;
                todo.push(c);
            }
        }
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        depth.insert("all".into(), 0);
        let mut ready = vec!["all"];
        while let Some(g) = ready.pop() {
            let d = depth.get(g).copied().unwrap_or(0);
            for c in children(g) {
                let e = depth.entry(c.clone()).or_insert(d + 1);
                *e = (*e).max(d + 1);
                if let Some(n) = indegree.get_mut(c.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(c);
                    }
                }
            }
        }
        depth
    }

    /// A host's variables with Ansible's precedence: all < parent groups < child groups < host.
    pub fn vars_for(&self, host: &str) -> Option<Map<String, Value>> {
        let own = self.host_vars.get(host)?;
        let mut vars = Map::new();
        for g in self.host_groups(host) {
            vars.extend(self.groups[&g].vars.clone());
        }
        vars.extend(own.clone());
        vars.insert("inventory_hostname".into(), Value::from(host));
        vars.insert(
            "inventory_hostname_short".into(),
            Value::from(host.split('.').next().unwrap_or(host)),
        );
        let groups: Vec<String> = self
            .host_groups(host)
            .into_iter()
            .filter(|g| g != "all" && g != "ungrouped")
            .collect();
        vars.insert("group_names".into(), Value::from(groups));
        Some(vars)
    }

    /// Add a host at run time (`ftl.add_host`).
    pub fn add_runtime_host(
        &mut self,
        name: &str,
        groups: &[String],
        vars: Map<String, Value>,
    ) -> Result<()> {
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("invalid host name {name:?}");
        }
        let new = !self.host_vars.contains_key(name);
        self.add_to_group("all", name);
        self.group("all").hosts.retain(|h| h != name); // `all` holds hosts implicitly
        for g in groups {
            self.add_to_group(g, name);
            if !self.groups["all"].children.contains(g) && g != "all" {
                self.group("all").children.push(g.clone());
            }
        }
        self.host_vars.get_mut(name).unwrap().extend(vars);
        if new {
            self.added.insert(name.to_string());
        }
        self.finish();
        Ok(())
    }

    /// Remove a host added at run time.
    pub fn remove_runtime_host(&mut self, name: &str) -> Result<()> {
        if !self.added.remove(name) {
            bail!("host {name:?} was not added by the script, so it cannot be removed");
        }
        self.hosts.retain(|h| h != name);
        self.host_vars.remove(name);
        for g in self.groups.values_mut() {
            g.hosts.retain(|h| h != name);
        }
        self.listed.retain(|(_, h)| h != name);
        self.index_memberships();
        Ok(())
    }
}

/// A directory's entries in name order (Ansible reads inventory and vars files sorted).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// What a script read for `automation(inventory="file")`: the file's name and text, and the text of
/// each `group_vars/<group>` and `host_vars/<host>` file (several for a directory, in name order).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ScriptInventory {
    /// The path the script gave (for messages and the file extension).
    pub name: String,
    /// The inventory file's text.
    pub text: String,
    /// `(group, texts)` from `group_vars/`.
    #[serde(default)]
    #[serde(rename = "group-vars")]
    pub group_vars: Vec<(String, Vec<String>)>,
    /// `(host, texts)` from `host_vars/`.
    #[serde(default)]
    #[serde(rename = "host-vars")]
    pub host_vars: Vec<(String, Vec<String>)>,
}

/// A vars file's mapping from its text (`shown` names it in errors).
fn vars_from_text(text: &str, shown: &str) -> Result<Map<String, Value>> {
    match crate::job::parse_yaml_or_json(text).with_context(|| format!("vars file {shown}"))? {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => bail!("vars file {shown} must be a mapping"),
    }
}

fn read_vars(path: &Path) -> Result<Map<String, Value>> {
    if path.is_dir() {
        let mut out = Map::new();
        for p in sorted_entries(path)? {
            if p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or(".")
                    .starts_with('.')
            {
                out.extend(read_vars(&p)?);
            }
        }
        return Ok(out);
    }
    let text = String::from_utf8(read_capped(path)?)
        .map_err(|_| anyhow!("vars file {} is not UTF-8 text", path.display()))?;
    vars_from_text(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mutated_inventories_load_or_fail_with_an_error_never_a_panic() {
        use crate::mutate::{cases, each_mutation};
        let ini = "web[1:3] ansible_user=deploy\n[db]\ndb1 ansible_port=2222\n[db:vars]\nx=1\n\
                   [all:children]\ndb\nweb2\n[app:children]\ndb\n";
        let yaml = "all:\n  hosts:\n    a1: {ansible_host: 10.0.0.1}\n  children:\n    web:\n      \
                    hosts:\n        w[01:03]:\n      vars: &v {tier: front}\n    db:\n      \
                    children: {web: {}}\n      vars: *v\n";
        let json = r#"{"_meta": {"hostvars": {"h1": {"v": 1}}}, "all": {"children": ["g"]},
                       "g": {"hosts": ["h1", "h2"], "vars": {"k": [1, 2]}, "children": ["h"]},
                       "h": ["h3"]}"#;
        let vars = "tier: back\nlist: [1, 2]\nnested: {a: {b: c}}\n";
        for (name, text) in [("inv.ini", ini), ("inv.yml", yaml), ("inv.json", json)] {
            // The inventory mutated with valid vars files, then the vars files mutated.
            for vars_mutated in [false, true] {
                let seed: &[u8] = if vars_mutated {
                    vars.as_bytes()
                } else {
                    text.as_bytes()
                };
                each_mutation(name, &[seed], cases(1000), |input| {
                    let input = String::from_utf8_lossy(input).into_owned();
                    let (text, vars) = if vars_mutated {
                        (text.to_string(), input)
                    } else {
                        (input, vars.to_string())
                    };
                    let source = ScriptInventory {
                        name: name.into(),
                        text,
                        group_vars: vec![("web".into(), vec![vars.clone()])],
                        host_vars: vec![("h1".into(), vec![vars])],
                    };
                    if let Ok(inv) = Inventory::from_script(&source) {
                        for host in inv.hosts.iter().take(50) {
                            let _ = inv.vars_for(host);
                            let _ = inv.host_groups(host);
                        }
                        let _ = inv.select("all:!db:&web");
                    }
                });
            }
        }
        each_mutation("awx script", &[json.as_bytes()], cases(1500), |input| {
            let _ = scripts::awx_script_json(&String::from_utf8_lossy(input));
        });
    }

    fn ini(text: &str) -> Inventory {
        let mut inv = Inventory::empty();
        inv.merge_ini(text).unwrap();
        inv.finish();
        inv
    }

    #[test]
    fn a_script_inventory_joins_the_job_inventory_with_its_vars_files() {
        let mut job = ini("web1\n[web]\nweb2\n");
        let source = ScriptInventory {
            name: "extra.ini".into(),
            text: "[extra]\nx1 colour=blue\nx2\n[extra:children]\nweb\n".into(),
            group_vars: vec![("extra".into(), vec!["tier: front\ncolour: red\n".into()])],
            host_vars: vec![("x2".into(), vec!["size: 2".into(), "size: 3".into()])],
        };
        let added = job.merge(Inventory::from_script(&source).unwrap()).unwrap();
        assert_eq!(added, vec!["x1", "x2"]);
        assert_eq!(job.group_hosts("extra"), vec!["web2", "x1", "x2"]);
        let v = job.vars_for("x1").unwrap();
        assert_eq!(
            (&v["colour"], &v["tier"]),
            (&json!("blue"), &json!("front"))
        );
        assert_eq!(job.vars_for("x2").unwrap()["size"], json!(3));
        assert_eq!(job.vars_for("web2").unwrap()["tier"], json!("front"));
        job.remove_runtime_host("x1").unwrap();
        assert!(job.remove_runtime_host("web1").is_err(), "job hosts stay");
        let script = ScriptInventory {
            name: "x".into(),
            text: "#!/bin/sh\n".into(),
            ..Default::default()
        };
        let err = format!("{:#}", Inventory::from_script(&script).unwrap_err());
        assert!(
            err.contains("executable inventory cannot be given"),
            "{err}"
        );
    }

    #[test]
    fn awx_script_is_parsed_without_running_it() {
        let text = "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint('{\"all\": {\"hosts\": [\"localhost\"], \"vars\": {\"inv_var\": \"it\\'s\"}}, \"_meta\": {\"hostvars\": {\"localhost\": {\"ansible_connection\": \"local\"}}}}')\n";
        let v = awx_script_json(text).unwrap();
        assert_eq!(v["all"]["vars"]["inv_var"], json!("it's"));
        let mut inv = Inventory::empty();
        inv.merge_json(&v).unwrap();
        inv.finish();
        assert_eq!(inv.hosts, ["localhost"]);
        assert_eq!(inv.vars_for("localhost").unwrap()["inv_var"], json!("it's"));
        assert!(awx_script_json("#!/bin/sh\necho '{}'\n").is_err());
    }

    #[test]
    fn ini_groups_children_ranges_and_precedence() {
        let inv = ini(
            "top ansible_host=10.0.0.1\n[web]\nweb[01:03] role=web\n[db]\ndb-[a:b]:2222\n\
             [prod:children]\nweb\ndb\n[prod:vars]\nenv=prod\nlevel=1\n[web:vars]\nlevel=2\n[all:vars]\nenv=base\nx=1\n",
        );
        assert_eq!(
            inv.hosts,
            ["top", "web01", "web02", "web03", "db-a", "db-b"]
        );
        assert_eq!(
            inv.group_hosts("prod"),
            ["web01", "web02", "web03", "db-a", "db-b"]
        );
        assert_eq!(inv.group_hosts("ungrouped"), ["top"]);
        let v = inv.vars_for("web02").unwrap();
        assert_eq!(
            (v["env"].clone(), v["level"].clone(), v["x"].clone()),
            (json!("prod"), json!(2), json!(1))
        );
        assert_eq!(inv.vars_for("db-a").unwrap()["ansible_port"], json!(2222));
        assert_eq!(inv.select("web:&prod:!web02").unwrap(), ["web01", "web03"]);
        assert_eq!(inv.select("db*,top").unwrap(), ["top", "db-a", "db-b"]);
        assert_eq!(inv.select("~web0[12]").unwrap(), ["web01", "web02"]);
        assert_eq!(inv.select("localhost").unwrap(), ["localhost"]);
        assert!(inv.select("nosuch").unwrap().is_empty());
    }

    #[test]
    fn host_ranges_are_counted_before_they_are_expanded() {
        // 26 letters x 100,000 numbers: over the cap, refused before any name is made.
        let err = expand_host_range("h[a:z][0:99999]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expands to 2600000 hosts, more than the cap of 100000"),
            "{err}"
        );
        assert_eq!(expand_host_range("h[a:c]").unwrap(), ["ha", "hb", "hc"]);
    }

    #[test]
    fn broken_ini_names_the_line() {
        let mut inv = Inventory::empty();
        let err = inv.merge_ini("[web\nhost1\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        let err = inv.merge_ini("[web]\nhost1 novalue\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }

    #[test]
    fn yaml_inventory_nests_children() {
        let v = crate::job::parse_yaml_or_json(
            "all:\n  vars: {a: 0}\n  children:\n    web:\n      hosts:\n        w1: {a: 3}\n        w2:\n      vars: {a: 1, b: 1}\n      children:\n        canary:\n          hosts:\n            w2:\n          vars: {a: 2}\n",
        )
        .unwrap();
        let mut inv = Inventory::empty();
        inv.merge_yaml(&v).unwrap();
        inv.finish();
        assert_eq!(inv.hosts, ["w1", "w2"]);
        assert_eq!(inv.vars_for("w1").unwrap()["a"], json!(3));
        assert_eq!(inv.vars_for("w2").unwrap()["a"], json!(2));
        assert_eq!(inv.vars_for("w2").unwrap()["b"], json!(1));
    }
}
