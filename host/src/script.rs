//! Which automation script a job runs.
//!
//! In order: `$FTL2_SCRIPT` (set by the EE image or the admin), the AWX playbook under
//! `project/` when that file is really a script (any extension; e.g. a `.yml` starting with
//! `hosts: all  # noqa` so AWX's playbook discovery lists it), else the baked-in
//! `/opt/ftl2/main.py`. A real YAML playbook is ignored: the baked script runs instead.

use crate::job::JobSettings;
use std::path::{Path, PathBuf};

/// The script baked into the execution environment image.
pub const BAKED_SCRIPT: &str = "/opt/ftl2/main.py";

/// Where the job's script comes from, for the job output.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptSource {
    /// `$FTL2_SCRIPT`.
    Environment,
    /// The AWX playbook, which is a script.
    Playbook,
    /// The image's baked-in script.
    Baked,
}

/// The script chosen for a job, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptChoice {
    /// Run this file.
    Found {
        /// The script.
        path: PathBuf,
        /// How it was chosen.
        source: ScriptSource,
    },
    /// No script exists; the text explains what was looked for.
    Missing(String),
}

/// Choose the script for `job`; `env_script` is `$FTL2_SCRIPT` when set.
pub fn locate(job: &JobSettings, env_script: Option<&str>) -> ScriptChoice {
    let mut looked = Vec::new();
    if let Some(s) = env_script.filter(|s| !s.is_empty()) {
        let p = PathBuf::from(s);
        if p.is_file() {
            return ScriptChoice::Found {
                path: p,
                source: ScriptSource::Environment,
            };
        }
        return ScriptChoice::Missing(format!(
            "FTL2_SCRIPT names {s}, which does not exist or is not a file"
        ));
    }
    if let Some(pb) = &job.playbook {
        let project = job.private_data_dir.join("project");
        match playbook_script(&project, pb) {
            Ok(Some(p)) => {
                return ScriptChoice::Found {
                    path: p,
                    source: ScriptSource::Playbook,
                };
            }
            Ok(None) => looked.push(format!("project/{pb} is a YAML playbook, not a script")),
            Err(why) => looked.push(why),
        }
    }
    let baked = Path::new(BAKED_SCRIPT);
    if baked.is_file() {
        return ScriptChoice::Found {
            path: baked.to_path_buf(),
            source: ScriptSource::Baked,
        };
    }
    looked.push(format!("{BAKED_SCRIPT} does not exist"));
    ScriptChoice::Missing(format!(
        "no automation script to run: {}. Bake a script into the image at {BAKED_SCRIPT}, \
         set FTL2_SCRIPT, or point the job template's playbook at a script in the project.",
        looked.join("; ")
    ))
}

/// `Ok(Some(path))` if `project/<playbook>` is a script, `Ok(None)` if it is a YAML playbook.
fn playbook_script(project: &Path, playbook: &str) -> Result<Option<PathBuf>, String> {
    let path = project.join(playbook);
    let (Ok(real), Ok(root)) = (path.canonicalize(), project.canonicalize()) else {
        return Err(format!("project/{playbook} does not exist"));
    };
    if !real.starts_with(&root) {
        return Err(format!("project/{playbook} points outside the project"));
    }
    let text = std::fs::read_to_string(&real)
        .map_err(|e| format!("cannot read project/{playbook}: {e}"))?;
    Ok(if is_yaml_playbook(&text) {
        None
    } else {
        Some(path)
    })
}

/// A real playbook is a YAML list of plays; anything else (Python, `hosts: all  # noqa` + Python)
/// is treated as a script.
pub fn is_yaml_playbook(text: &str) -> bool {
    matches!(crate::yaml::parse(text), Ok(serde_json::Value::Array(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playbooks_and_scripts_are_told_apart() {
        assert!(is_yaml_playbook("- hosts: all\n  tasks: []\n"));
        assert!(!is_yaml_playbook(
            "hosts: all  # noqa\nasync def run(a, b, c):\n    return 0\n"
        ));
        assert!(!is_yaml_playbook(
            "import ftl2\n\nasync def run(inventory_path, extravars, runner):\n    return 0\n"
        ));
    }
}
