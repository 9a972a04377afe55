//! Ansible's task selection by tags (`--tags`, `--skip-tags`, AWX's job_tags and skip_tags),
//! applied to a script's calls that carry `_tags`: the rules of ansible-core's
//! `Taggable.evaluate_tags`, with its special tags `always`, `never`, `tagged`, `untagged`, `all`.

use std::collections::BTreeSet;

/// The job's tag selection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// `--tags` (empty: `all`, as ansible-playbook's default).
    pub only: BTreeSet<String>,
    /// `--skip-tags`.
    pub skip: BTreeSet<String>,
}

impl Selection {
    /// The selection `--tags`/`--skip-tags` ask for.
    pub fn new(only: &[String], skip: &[String]) -> Selection {
        let mut only: BTreeSet<String> = only.iter().cloned().collect();
        if only.is_empty() {
            only.insert("all".into());
        }
        Selection {
            only,
            skip: skip.iter().cloned().collect(),
        }
    }

    /// Whether a call with these tags runs (`evaluate_tags`).
    pub fn runs(&self, call_tags: &[String]) -> bool {
        let tags: BTreeSet<&str> = if call_tags.is_empty() {
            BTreeSet::from(["untagged"])
        } else {
            call_tags.iter().map(String::as_str).collect()
        };
        let untagged = tags.len() == 1 && tags.contains("untagged");
        let meets = |set: &BTreeSet<String>| set.iter().any(|t| tags.contains(t.as_str()));
        let has = |set: &BTreeSet<String>, t: &str| set.contains(t);
        let mut run = tags.contains("always")
            || (has(&self.only, "all") && !tags.contains("never"))
            || meets(&self.only)
            || (has(&self.only, "tagged") && !untagged && !tags.contains("never"));
        if run && !self.skip.is_empty() {
            if has(&self.skip, "all") {
                if !tags.contains("always") || has(&self.skip, "always") {
                    run = false;
                }
            } else if meets(&self.skip) || (has(&self.skip, "tagged") && !untagged) {
                run = false;
            }
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::Selection;

    fn sel(only: &[&str], skip: &[&str]) -> Selection {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Selection::new(&v(only), &v(skip))
    }

    fn runs(s: &Selection, tags: &[&str]) -> bool {
        s.runs(&tags.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ansible_s_rules() {
        let default = sel(&[], &[]);
        assert!(runs(&default, &[]) && runs(&default, &["web"]) && runs(&default, &["always"]));
        assert!(!runs(&default, &["never"]) && !runs(&default, &["never", "web"]));
        let web = sel(&["web"], &[]);
        assert!(runs(&web, &["web"]) && runs(&web, &["always"]) && runs(&web, &["never", "web"]));
        assert!(!runs(&web, &[]) && !runs(&web, &["db"]));
        let tagged = sel(&["tagged"], &[]);
        assert!(runs(&tagged, &["db"]) && !runs(&tagged, &[]) && !runs(&tagged, &["never"]));
        let untagged = sel(&["untagged"], &[]);
        assert!(runs(&untagged, &[]) && !runs(&untagged, &["db"]));
        let skip_web = sel(&[], &["web"]);
        assert!(!runs(&skip_web, &["web"]) && runs(&skip_web, &["db"]) && runs(&skip_web, &[]));
        let skip_all = sel(&[], &["all"]);
        assert!(!runs(&skip_all, &["web"]) && runs(&skip_all, &["always"]));
        assert!(!runs(&sel(&[], &["all", "always"]), &["always"]));
        let skip_tagged = sel(&[], &["tagged"]);
        assert!(!runs(&skip_tagged, &["web"]) && runs(&skip_tagged, &[]));
        assert!(!runs(&sel(&["web"], &["web"]), &["web"]));
    }
}
