//! Ansible host patterns: `all`, `*`, names, groups, globs, `~regex`, `a:b`, `a:&b`, `a:!b` and
//! subscripts (`web[0]`, `prod[1:2]`).

use super::Inventory;
use anyhow::{Result, anyhow};
use std::collections::BTreeSet;

impl Inventory {
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
            let ordered: Vec<String> = if self.groups.contains_key(base) {
                self.group_hosts(base)
            } else {
                let matched = self.match_term(base)?;
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
            return Ok(self.names_matching(|name| re.is_match(name)));
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
            return Ok(self.names_matching(|name| pat.matches(name)));
        }
        if term == "localhost" || term == "127.0.0.1" {
            return Ok([term.to_string()].into()); // Ansible's implicit localhost
        }
        Ok(BTreeSet::new())
    }

    /// Hosts whose name matches, plus every host of each group whose name matches (as Ansible
    /// matches regex and glob terms against both).
    fn names_matching(&self, matches: impl Fn(&str) -> bool) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.hosts.iter().filter(|h| matches(h)).cloned().collect();
        for g in self.groups.keys().filter(|g| matches(g)) {
            out.extend(self.group_hosts(g));
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
