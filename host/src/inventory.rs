//! Inventories with Ansible's semantics: AWX's inventory script (parsed, never executed), Ansible
//! JSON, INI and YAML files, inventory directories, `group_vars/` and `host_vars/`, child groups,
//! variable precedence (all < parent < child < host) and host patterns (`a:b`, `a:&b`, `a:!b`,
//! wildcards, `~regex`), with the job's `--limit` applied to every pattern.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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
        let bytes =
            fs::read(path).with_context(|| format!("cannot read inventory {}", path.display()))?;
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
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("inventory {shown} is not valid JSON"))?;
            return self
                .merge_json(&v)
                .with_context(|| format!("inventory {shown}"));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "yml" | "yaml") || looks_like_yaml_inventory(&text) {
            let v = crate::job::parse_yaml_or_json(&text)
                .with_context(|| format!("inventory {shown}"))?;
            return self
                .merge_yaml(&v)
                .with_context(|| format!("inventory {shown}"));
        }
        self.merge_ini(&text)
            .with_context(|| format!("inventory {shown}"))
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
        let g = self.group(group);
        if !g.hosts.iter().any(|h| h == host) {
            g.hosts.push(host.to_string());
        }
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.group(child);
        let g = self.group(parent);
        if !g.children.iter().any(|c| c == child) {
            g.children.push(child.to_string());
        }
    }

    /// Ansible's `--list` JSON: `{group: {hosts, children, vars}, _meta: {hostvars}}`.
    fn merge_json(&mut self, v: &Value) -> Result<()> {
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
    fn merge_yaml(&mut self, v: &Value) -> Result<()> {
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
    fn merge_ini(&mut self, text: &str) -> Result<()> {
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
                if is_group {
                    self.group(&name).vars.extend(vars);
                } else if let Some(hv) = self.host_vars.get_mut(&name) {
                    // host_vars/ files override inline inventory host vars, as in Ansible.
                    hv.extend(vars);
                }
            }
        }
        Ok(())
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
        let children: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != "all")
            .filter(|g| !self.groups.values().any(|p| p.children.contains(g)))
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

    fn index_memberships(&mut self) {
        let mut depth: BTreeMap<String, usize> = BTreeMap::new();
        self.depths("all", 0, &mut depth, &mut BTreeSet::new());
        let mut member_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in self.groups.keys() {
            for h in self.group_hosts(g) {
                member_of.entry(h).or_default().push(g.clone());
            }
        }
        for groups in member_of.values_mut() {
            groups.sort_by_key(|g| (depth.get(g).copied().unwrap_or(1), g.clone()));
        }
        self.member_of = member_of;
    }

    /// Every host of `group` including its descendants', in inventory order.
    pub fn group_hosts(&self, group: &str) -> Vec<String> {
        if group == "all" {
            return self.hosts.clone();
        }
        let mut seen_groups = BTreeSet::new();
        let mut members = BTreeSet::new();
        self.collect(group, &mut seen_groups, &mut members);
        self.hosts
            .iter()
            .filter(|h| members.contains(*h))
            .cloned()
            .collect()
    }

    fn collect(&self, group: &str, seen: &mut BTreeSet<String>, out: &mut BTreeSet<String>) {
        if !seen.insert(group.to_string()) {
            return; // cycles are ignored, as Ansible refuses them anyway
        }
        if let Some(g) = self.groups.get(group) {
            out.extend(g.hosts.iter().cloned());
            for c in &g.children {
                self.collect(c, seen, out);
            }
        }
    }

    /// Groups a host belongs to, ordered from `all` down to the most specific (depth, then name).
    pub fn host_groups(&self, host: &str) -> Vec<String> {
        self.member_of.get(host).cloned().unwrap_or_default()
    }

    fn depths(
        &self,
        g: &str,
        d: usize,
        out: &mut BTreeMap<String, usize>,
        stack: &mut BTreeSet<String>,
    ) {
        if !stack.insert(g.to_string()) {
            return;
        }
        let e = out.entry(g.to_string()).or_insert(d);
        *e = (*e).max(d);
        if let Some(grp) = self.groups.get(g) {
            for c in &grp.children {
                self.depths(c, d + 1, out, stack);
            }
        }
        stack.remove(g);
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
        self.index_memberships();
        Ok(())
    }

    /// Hosts matching an Ansible host pattern, in inventory order.
    pub fn select(&self, pattern: &str) -> Result<Vec<String>> {
        let mut include: Option<BTreeSet<String>> = None;
        let mut intersect: Vec<BTreeSet<String>> = Vec::new();
        let mut exclude: BTreeSet<String> = BTreeSet::new();
        for term in split_pattern(pattern) {
            if let Some(t) = term.strip_prefix('&') {
                intersect.push(self.match_term(t)?);
            } else if let Some(t) = term.strip_prefix('!') {
                exclude.extend(self.match_term(t)?);
            } else {
                include
                    .get_or_insert_with(BTreeSet::new)
                    .extend(self.match_term(&term)?);
            }
        }
        let mut set = include.unwrap_or_default();
        for i in intersect {
            set.retain(|h| i.contains(h));
        }
        set.retain(|h| !exclude.contains(h));
        let mut out: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| set.contains(*h))
            .cloned()
            .collect();
        // An explicitly named host outside the inventory (implicit localhost) keeps its place.
        for h in &set {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        Ok(out)
    }

    fn match_term(&self, term: &str) -> Result<BTreeSet<String>> {
        let term = term.trim();
        if term.is_empty() {
            return Ok(BTreeSet::new());
        }
        if let Some((base, subscript)) = split_subscript(term) {
            // `web[0]`, `web[-1]`, `prod[1:2]` (inclusive), `web[1:]`: positions in the order
            // the base pattern lists its hosts.
            let matched = self.match_term(base)?;
            let ordered: Vec<String> = if self.groups.contains_key(base) {
                self.group_hosts(base)
            } else {
                self.hosts
                    .iter()
                    .filter(|h| matched.contains(*h))
                    .cloned()
                    .collect()
            };
            return Ok(subscript.apply(&ordered).into_iter().collect());
        }
        if term == "all" || term == "*" {
            return Ok(self.hosts.iter().cloned().collect());
        }
        if let Some(re) = term.strip_prefix('~') {
            // Ansible compiles the rest with Python's `re` and keeps names it `.match()`es:
            // anchored at the start, not at the end.
            let re = regex::Regex::new(&format!("^(?:{re})"))
                .map_err(|e| anyhow!("Invalid host list pattern: {term}: {e}"))?;
            let mut out: BTreeSet<String> = self
                .hosts
                .iter()
                .filter(|h| re.is_match(h))
                .cloned()
                .collect();
            for g in self.groups.keys().filter(|g| re.is_match(g)) {
                out.extend(self.group_hosts(g));
            }
            return Ok(out);
        }
        if self.groups.contains_key(term) {
            return Ok(self.group_hosts(term).into_iter().collect());
        }
        if self.host_vars.contains_key(term) {
            return Ok([term.to_string()].into());
        }
        if term.contains(['*', '?', '[']) {
            let pat =
                glob::Pattern::new(term).map_err(|e| anyhow!("bad host pattern {term:?}: {e}"))?;
            let mut out: BTreeSet<String> = self
                .hosts
                .iter()
                .filter(|h| pat.matches(h))
                .cloned()
                .collect();
            for g in self.groups.keys().filter(|g| pat.matches(g)) {
                out.extend(self.group_hosts(g));
            }
            return Ok(out);
        }
        if term == "localhost" || term == "127.0.0.1" {
            return Ok([term.to_string()].into()); // Ansible's implicit localhost
        }
        Ok(BTreeSet::new())
    }
}

/// A host pattern's `[..]` suffix, as Ansible reads it: one index (negative counts from the end)
/// or an inclusive range whose end may be left open (`[x:]`; `[x-y]` is the old spelling).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Subscript {
    Index(i64),
    Range(usize, Option<usize>),
}

impl Subscript {
    fn apply(self, hosts: &[String]) -> Vec<String> {
        let n = hosts.len() as i64;
        match self {
            Subscript::Index(i) => {
                let i = if i < 0 { n + i } else { i };
                if (0..n).contains(&i) {
                    vec![hosts[i as usize].clone()]
                } else {
                    Vec::new()
                }
            }
            Subscript::Range(start, end) => {
                let end = end.unwrap_or(usize::MAX).min(hosts.len().saturating_sub(1));
                hosts
                    .get(start..=end)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default()
            }
        }
    }
}

/// `base[subscript]` split in two; `None` for regex terms (`~`) and anything else Ansible
/// would read as a glob (`web0[12]` is a subscript, `web[:1]` a glob).
fn split_subscript(term: &str) -> Option<(&str, Subscript)> {
    if term.starts_with('~') || !term.ends_with(']') {
        return None;
    }
    let open = term.rfind('[')?;
    let (base, inner) = (&term[..open], &term[open + 1..term.len() - 1]);
    if base.is_empty() {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(inner.strip_prefix('-').unwrap_or(inner)) {
        return inner.parse().ok().map(|i| (base, Subscript::Index(i)));
    }
    let sep = inner.find([':', '-'])?;
    let (start, end) = (&inner[..sep], &inner[sep + 1..]);
    if !digits(start) || !(end.is_empty() || digits(end)) {
        return None;
    }
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((base, Subscript::Range(start.parse().ok()?, end)))
}

/// Split `a:b,&c:!d` into terms, keeping `[1:3]` ranges and IPv6 colons inside brackets intact.
fn split_pattern(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in pattern.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                depth -= 1;
                cur.push(c)
            }
            ':' | ',' if depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
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
    if let (Ok(start), Ok(end)) = (a.parse::<u64>(), b.parse::<u64>()) {
        if start > end {
            bail!("host range {pattern:?} runs backwards");
        }
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

fn looks_like_yaml_inventory(text: &str) -> bool {
    let first = text
        .lines()
        .map(str::trim_end)
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    matches!(first, Some(l) if l == "---" || (l.ends_with(':') && !l.starts_with('[') && !l.contains(' ')))
}

/// A directory's entries in name order (Ansible reads inventory and vars files sorted).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
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
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match crate::job::parse_yaml_or_json(&text)
        .with_context(|| format!("vars file {}", path.display()))?
    {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => bail!("vars file {} must be a mapping", path.display()),
    }
}

/// Whether the EE's admin allows running executable inventories that are not AWX's script.
fn scripts_allowed() -> bool {
    std::env::var("FTL2_ALLOW_INVENTORY_SCRIPTS").is_ok_and(|v| crate::job::is_true_word(&v))
}

/// Run `<script> --list` (60 s at most) and parse its JSON, as Ansible's script plugin does.
fn run_inventory_script(path: &Path) -> Result<Value> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(path)
        .arg("--list")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_end(&mut out);
        out
    });
    loop {
        if let Some(status) = child.try_wait()? {
            let out = reader.join().unwrap_or_default();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!(
                    "`{} --list` failed ({status}): {}",
                    path.display(),
                    err.trim()
                );
            }
            return serde_json::from_slice(&out)
                .map_err(|e| anyhow!("`{} --list` printed invalid JSON: {e}", path.display()));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("`{} --list` did not finish within 60 s", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The JSON inside AWX's inventory script, read without executing it.
///
/// AWX writes exactly `#! /usr/bin/env python3`, a coding line, and `print('<json>')` where the
/// JSON is Python's repr of a string: printable ASCII, single-quoted, `\\` and `\'` escaped.
pub fn awx_script_json(text: &str) -> Result<Value> {
    let lines: Vec<&str> = text.lines().collect();
    let body = lines
        .iter()
        .find(|l| l.starts_with("print('"))
        .ok_or_else(|| anyhow!("an executable inventory that is not AWX's inventory script (no print('...') line); refusing to run it"))?;
    let inner = body
        .strip_prefix("print('")
        .and_then(|b| b.strip_suffix("')"))
        .ok_or_else(|| anyhow!("the print('...') line of the inventory script is malformed"))?;
    let mut json = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => json.push('\\'),
                Some('\'') => json.push('\''),
                Some(other) => bail!("unexpected escape \\{other} in the inventory script"),
                None => bail!("dangling backslash in the inventory script"),
            }
        } else {
            json.push(c);
        }
    }
    serde_json::from_str(&json).map_err(|e| anyhow!("the inventory script's JSON is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ini(text: &str) -> Inventory {
        let mut inv = Inventory::empty();
        inv.merge_ini(text).unwrap();
        inv.finish();
        inv
    }

    #[test]
    fn subscripts_read_like_ansible() {
        assert_eq!(
            split_subscript("web[0]"),
            Some(("web", Subscript::Index(0)))
        );
        assert_eq!(
            split_subscript("web[-1]"),
            Some(("web", Subscript::Index(-1)))
        );
        assert_eq!(
            split_subscript("a[1:2]"),
            Some(("a", Subscript::Range(1, Some(2))))
        );
        assert_eq!(
            split_subscript("a[1:]"),
            Some(("a", Subscript::Range(1, None)))
        );
        assert_eq!(
            split_subscript("a[0-1]"),
            Some(("a", Subscript::Range(0, Some(1))))
        );
        for glob in ["web[:1]", "~web[0]", "web[a]", "[0]", "web"] {
            assert_eq!(split_subscript(glob), None, "{glob}");
        }
        let hosts: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(Subscript::Index(-1).apply(&hosts), ["c"]);
        assert!(Subscript::Index(3).apply(&hosts).is_empty());
        assert_eq!(Subscript::Range(1, Some(9)).apply(&hosts), ["b", "c"]);
        assert!(Subscript::Range(5, None).apply(&hosts).is_empty());
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
