//! The job's settings, read from what AWX sends: kwargs first, files in the private data dir as
//! the fallback (`env/*`), exactly the sources ansible-runner reads.
//!
//! Secrets (the SSH key and the prompt passwords) are held in [`Secret`], which never prints its
//! value, so they cannot leak into events, artifacts or logs by accident.

use crate::boolean::{ansible_bool, is_true_word};
use crate::cmdline::CmdlineOptions;
use crate::secret::Secret;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// ansible-runner's `env/settings`: timeouts and output suppression.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerSettings {
    /// Seconds the whole job may run; 0 = no limit.
    pub job_timeout: u64,
    /// Seconds without output before the job is stopped; 0 = no limit.
    pub idle_timeout: u64,
    /// Do not write `stdout`/`stderr` artifact files (AWX sets this; it reads events instead).
    pub suppress_output_file: bool,
}

/// Everything the job needs to know, gathered once when the transmit stream ends.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Where the job's files were unpacked.
    pub private_data_dir: PathBuf,
    /// The job ident (AWX's job id), the name of `artifacts/<ident>/`.
    pub ident: String,
    /// `playbook`, relative to `project/`.
    pub playbook: Option<String>,
    /// The inventory path, resolved against the private data dir.
    pub inventory: Option<PathBuf>,
    /// Environment variables AWX wants the job to see.
    pub envvars: BTreeMap<String, String>,
    /// Prompt regex -> answer (SSH / become / key passwords), real only with the `--ask-*` flag.
    pub passwords: Secret<Vec<(String, String)>>,
    /// The machine credential's private key (PEM).
    pub ssh_key: Option<Secret<String>>,
    /// `fact_cache_type` ("jsonfile" turns the fact cache on; "" turns it off).
    pub fact_cache_type: Option<String>,
    /// Ad hoc command: module name.
    pub module: Option<String>,
    /// Ad hoc command: module arguments.
    pub module_args: Option<String>,
    /// Ad hoc command: host pattern (kwarg `host_pattern`, else the last word of cmdline).
    pub host_pattern: Option<String>,
    /// Extra vars: `env/extravars`, then kwargs `extravars`, then every `-e` of cmdline.
    pub extravars: Map<String, Value>,
    /// `env/settings` merged with kwargs `settings`.
    pub settings: RunnerSettings,
    /// Options from `env/cmdline` (or kwargs `cmdline`), plus kwargs `limit`/`forks`/`verbosity`.
    pub cmdline: CmdlineOptions,
    /// A raw command instead of a playbook: the pdd's `args` file (how AWX sends inventory
    /// syncs: `ansible-inventory --list ...`) or kwarg `binary`. Not ours to run.
    pub raw_command: Option<String>,
    /// A terminal run (`ftl2-runner play`): the private data dir is our own empty scratch, not
    /// AWX's, so a script next to it exposes nothing.
    pub local_play: bool,
    /// `play --syntax-check`: the script is loaded and compiled, nothing runs.
    pub syntax_check: bool,
}

/// The job's `ident` kwarg (AWX's job id), checked to name an artifacts directory; None when
/// not given (a job then gets a fresh one).
pub fn given_ident(kwargs: &Map<String, Value>) -> Result<Option<String>> {
    let ident = match kwargs.get("ident") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => bail!("kwarg ident must be a string or an integer, not {other}"),
    };
    if ident.is_empty()
        || ident.contains('/')
        || ident == "."
        || ident == ".."
        || ident.contains('\0')
    {
        bail!("kwarg ident {ident:?} cannot name an artifacts directory");
    }
    Ok(Some(ident))
}

impl JobSettings {
    /// Gather the settings from `kwargs` and the unpacked private data dir `pdd`.
    pub fn load(pdd: &Path, kwargs: &Map<String, Value>) -> Result<JobSettings> {
        let ident = match given_ident(kwargs)? {
            Some(i) => i,
            None => uuid::Uuid::new_v4().to_string(),
        };

        let envvars = match kwargs.get("envvars") {
            Some(v) if !v.is_null() => string_map(v).context("kwarg envvars")?,
            _ => match read_optional(pdd, "env/envvars")? {
                Some(text) => string_map(&parse_yaml_or_json(&text).context("env/envvars")?)
                    .context("env/envvars")?,
                None => BTreeMap::new(),
            },
        };

        let passwords = match kwargs.get("passwords") {
            Some(v) if !v.is_null() => string_pairs(v).context("kwarg passwords")?,
            _ => match read_optional(pdd, "env/passwords")? {
                Some(text) => string_pairs(&parse_yaml_or_json(&text).context("env/passwords")?)
                    .context("env/passwords")?,
                None => Vec::new(),
            },
        };

        let ssh_key = match kwargs.get("ssh_key") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Null) | None => {
                read_optional(pdd, "env/ssh_key")?.filter(|s| !s.is_empty())
            }
            Some(_) => bail!("kwarg ssh_key must be a string"),
        };

        let mut settings_map = match read_optional(pdd, "env/settings")? {
            Some(text) => as_object(
                parse_yaml_or_json(&text).context("env/settings")?,
                "env/settings",
            )?,
            None => Map::new(),
        };
        if let Some(Value::Object(m)) = kwargs.get("settings") {
            settings_map.extend(m.clone());
        }
        let settings = RunnerSettings {
            job_timeout: seconds(&settings_map, "job_timeout")?,
            idle_timeout: seconds(&settings_map, "idle_timeout")?,
            suppress_output_file: truthy(settings_map.get("suppress_output_file")),
        };

        let cmdline_text = match kwargs.get("cmdline") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => read_optional(pdd, "env/cmdline")?,
        };
        let mut cmdline = match &cmdline_text {
            Some(t) => CmdlineOptions::parse(t).context("env/cmdline")?,
            None => CmdlineOptions::default(),
        };
        if cmdline.limit.is_none() {
            cmdline.limit = opt_string(kwargs, "limit");
        }
        if cmdline.forks.is_none()
            && let Some(n) = kwargs.get("forks").and_then(Value::as_u64)
        {
            cmdline.forks = Some(n as u32);
        }
        if let Some(n) = kwargs.get("verbosity").and_then(Value::as_u64) {
            cmdline.verbosity = cmdline.verbosity.max(n.min(5) as u8);
        }

        let mut extravars = match read_optional(pdd, "env/extravars")? {
            Some(text) => as_object(
                parse_yaml_or_json(&text).context("env/extravars")?,
                "env/extravars",
            )?,
            None => Map::new(),
        };
        if let Some(Value::Object(m)) = kwargs.get("extravars") {
            extravars.extend(m.clone());
        }
        let project = pdd.join("project");
        for ev in &cmdline.extra_vars {
            extravars.extend(load_extra_vars(ev, &project).with_context(|| format!("-e {ev}"))?);
        }

        let inventory = match kwargs.get("inventory") {
            Some(Value::String(s)) if !s.is_empty() => Some(pdd.join(s)),
            Some(Value::Null) | None => Some(pdd.join("inventory")).filter(|p| p.exists()),
            Some(other) => bail!("kwarg inventory must be a path, not {other}"),
        };

        Ok(JobSettings {
            private_data_dir: pdd.to_path_buf(),
            ident,
            playbook: opt_string(kwargs, "playbook"),
            inventory,
            envvars,
            passwords: Secret::new(passwords),
            ssh_key: ssh_key.map(Secret::new),
            fact_cache_type: opt_string(kwargs, "fact_cache_type"),
            module: opt_string(kwargs, "module"),
            module_args: opt_string(kwargs, "module_args"),
            host_pattern: opt_string(kwargs, "host_pattern").or_else(|| {
                cmdline_text
                    .as_ref()
                    .and(cmdline.positional.last().cloned())
            }),
            extravars,
            settings,
            cmdline,
            raw_command: read_optional(pdd, "args")?
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .or_else(|| opt_string(kwargs, "binary")),
            local_play: false,
            syntax_check: false,
        })
    }

    /// What this job is when it is not a playbook run or ad hoc command we can stand in for:
    /// a raw command (AWX inventory syncs) or an AWX project update (`project_update.yml`).
    /// Running the script in their place would report work that never happened as done.
    pub fn foreign_job(&self) -> Option<String> {
        if let Some(raw) = &self.raw_command {
            let program = shlex::split(raw)
                .and_then(|w| w.into_iter().next())
                .unwrap_or_else(|| raw.clone());
            return Some(format!("raw commands: the job asks to run `{program}`"));
        }
        // Both marks, so a job that merely carries the variable (a credential can inject
        // environment variables) is not taken for one.
        if self.envvars.contains_key("PROJECT_UPDATE_ID")
            && self.playbook.as_deref() == Some("project_update.yml")
        {
            return Some("AWX project updates (project_update.yml)".into());
        }
        None
    }

    /// How results are printed: `-v` count, and colours when AWX forces them
    /// (ANSIBLE_FORCE_COLOR, unless ANSIBLE_NOCOLOR).
    pub fn display_style(&self, adhoc: bool) -> crate::display::Style {
        let on = |k: &str| self.envvars.get(k).is_some_and(|v| is_true_word(v));
        crate::display::Style {
            verbosity: self.cmdline.verbosity,
            color: on("ANSIBLE_FORCE_COLOR") && !on("ANSIBLE_NOCOLOR"),
            adhoc,
            display_args: on("ANSIBLE_DISPLAY_ARGS_TO_STDOUT"),
        }
    }

    /// `JOB_ID` from the job's environment as an integer, as the real callback copies it.
    pub fn job_id(&self) -> Option<i64> {
        self.envvars
            .get("JOB_ID")
            .and_then(|v| v.trim().parse().ok())
    }
}

fn read_optional(pdd: &Path, rel: &str) -> Result<Option<String>> {
    let path = pdd.join(rel);
    match fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(String::from_utf8(bytes).with_context(|| {
                format!("{} is not UTF-8 text", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn opt_string(kwargs: &Map<String, Value>, key: &str) -> Option<String> {
    match kwargs.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn as_object(v: Value, what: &str) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => bail!("{what} must be a mapping, not {}", type_name(&other)),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn string_map(v: &Value) -> Result<BTreeMap<String, String>> {
    let Value::Object(m) = v else {
        bail!("must be a mapping, not {}", type_name(v))
    };
    Ok(m.iter().map(|(k, v)| (k.clone(), python_str(v))).collect())
}

fn string_pairs(v: &Value) -> Result<Vec<(String, String)>> {
    Ok(string_map(v)?.into_iter().collect())
}

/// How Python's `str()` shows a JSON value, which is what ansible-runner puts in the environment.
fn python_str(v: &Value) -> String {
    crate::pyjson::scalar_str(v).unwrap_or_else(|| match v {
        Value::Null => "None".into(),
        other => other.to_string(),
    })
}

fn truthy(v: Option<&Value>) -> bool {
    v.and_then(ansible_bool).unwrap_or(false)
}

/// The longest timeout accepted (10 years): anything longer is a mistake, and durations that
/// large overflow the clock arithmetic of timers.
const MAX_SECONDS: f64 = 315_360_000.0;

/// A timeout setting in seconds (0: none), validated: a clear error for anything that is not a
/// number of seconds between 0 and [`MAX_SECONDS`].
fn seconds(m: &Map<String, Value>, key: &str) -> Result<u64> {
    let given = match m.get(key) {
        None | Some(Value::Null) => return Ok(0),
        Some(v) => v,
    };
    let parsed = match given {
        Value::Number(n) => n.as_f64(),
        // YAML's infinity (`.inf`) stays text in JSON values.
        Value::String(s)
            if s.trim()
                .trim_start_matches('+')
                .eq_ignore_ascii_case(".inf") =>
        {
            Some(f64::INFINITY)
        }
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(f) => Some(f),
            Err(_) => bail!("env/settings {key} {s:?} is not a number of seconds"),
        },
        other => bail!(
            "env/settings {key} must be a number of seconds, not {}",
            type_name(other)
        ),
    };
    match parsed {
        Some(f) if f < 0.0 => bail!("env/settings {key} must not be negative (got {given})"),
        Some(f) if f.is_finite() && f <= MAX_SECONDS => Ok(f.ceil() as u64),
        _ => bail!(
            "env/settings {key} {given} is out of range: at most {MAX_SECONDS} s (10 years); 0 \
             means no limit"
        ),
    }
}

/// Parse YAML (JSON is YAML) into JSON values the way Ansible reads it (YAML 1.1, tags such as
/// AWX's `!unsafe` dropped).
pub fn parse_yaml_or_json(text: &str) -> Result<Value> {
    crate::yaml::parse(text)
}

/// One `-e` argument: `@file` (YAML/JSON), inline JSON/YAML mapping, or `k=v k2=v2`.
fn load_extra_vars(arg: &str, project: &Path) -> Result<Map<String, Value>> {
    if let Some(file) = arg.strip_prefix('@') {
        let path = project.join(file); // absolute paths replace the project dir
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return as_object(parse_yaml_or_json(&text)?, &path.display().to_string());
    }
    let trimmed = arg.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with("---") {
        return as_object(parse_yaml_or_json(arg)?, "-e");
    }
    key_values(arg).map_err(|e| match e {
        KeyValueError::UnbalancedQuotes => anyhow!("unbalanced quotes"),
        KeyValueError::NotKeyValue(w) => anyhow!("{w:?} is not key=value"),
    })
}

/// Why `k=v` text could not be read.
pub enum KeyValueError {
    /// A quote is not closed.
    UnbalancedQuotes,
    /// This word has no `=`.
    NotKeyValue(String),
}

/// Shell-quoted `k=v k2='v 2'` as a map of strings, as `-e` and ad hoc module arguments take it.
pub fn key_values(text: &str) -> Result<Map<String, Value>, KeyValueError> {
    let words = shlex::split(text).ok_or(KeyValueError::UnbalancedQuotes)?;
    let mut m = Map::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(KeyValueError::NotKeyValue(w));
        };
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn awx_extravars_lose_their_unsafe_tags() {
        let text = "!unsafe 'greeting': !unsafe 'awx-extravars'\n!unsafe 'nested':\n  !unsafe 'count': 3\n  !unsafe 'key': !unsafe 'value'\n!unsafe 'a_list':\n- !unsafe 'one'\n- !unsafe 'two'\n!unsafe 'an_int': 17\n";
        let v = parse_yaml_or_json(text).unwrap();
        assert_eq!(
            v,
            json!({"greeting": "awx-extravars", "nested": {"count": 3, "key": "value"}, "a_list": ["one", "two"], "an_int": 17})
        );
    }

    #[test]
    fn kwargs_win_over_files_and_secrets_do_not_print() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("env")).unwrap();
        fs::write(dir.path().join("env/envvars"), r#"{"A": "file", "B": 2}"#).unwrap();
        fs::write(dir.path().join("env/ssh_key"), "-----BEGIN KEY-----").unwrap();
        fs::write(
            dir.path().join("env/passwords"),
            r#"{"SSH password:\\s*?$": "hunter2"}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join("env/settings"),
            r#"{"job_timeout": 5, "suppress_output_file": true}"#,
        )
        .unwrap();
        fs::write(
            dir.path().join("env/cmdline"),
            "-u root --forks=5 -v -e 'x=1 y=2'",
        )
        .unwrap();
        let kwargs = json!({"ident": 4242, "inventory": "inventory/hosts", "envvars": {"A": "kw"}});
        let s = JobSettings::load(dir.path(), kwargs.as_object().unwrap()).unwrap();
        assert_eq!(s.ident, "4242");
        assert_eq!(s.envvars.get("A").map(String::as_str), Some("kw"));
        assert_eq!(s.envvars.get("B"), None);
        assert_eq!(
            s.inventory.as_deref(),
            Some(dir.path().join("inventory/hosts").as_path())
        );
        assert_eq!(s.ssh_key.as_ref().unwrap().expose(), "-----BEGIN KEY-----");
        assert_eq!(s.passwords.expose()[0].1, "hunter2");
        assert_eq!(s.settings.job_timeout, 5);
        assert!(s.settings.suppress_output_file);
        assert_eq!(s.cmdline.user.as_deref(), Some("root"));
        assert_eq!(s.extravars.get("y"), Some(&json!("2")));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("BEGIN KEY"),
            "{shown}"
        );
    }

    #[test]
    fn bad_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("env")).unwrap();
        fs::write(dir.path().join("env/extravars"), "a: [unclosed").unwrap();
        let err = JobSettings::load(dir.path(), &Map::new()).unwrap_err();
        assert!(format!("{err:#}").contains("env/extravars"), "{err:#}");
        let err = JobSettings::load(dir.path(), json!({"ident": "../x"}).as_object().unwrap())
            .unwrap_err();
        assert!(format!("{err:#}").contains("ident"), "{err:#}");
    }
}
