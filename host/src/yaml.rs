//! YAML as Ansible reads it: PyYAML's YAML 1.1 rules, loaded into JSON values.
//!
//! Ansible's YAML is YAML 1.1 (`yes`/`no`/`on`/`off` are booleans, `0644` is octal), and AWX tags
//! strings `!unsafe`. YAML 1.2 parsers get both wrong (`enabled: no` would be a truthy string,
//! `mode: 0644` the number 644), so scalars are resolved here from the parser's events, with the
//! quoting style in hand: only plain scalars are typed; quoted and tagged ones stay strings.

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most values aliases may add to a document, each alias counting the values it repeats
/// (`FTL2_YAML_MAX_ALIAS_VALUES`, default 1 million, ~100 MB): a "billion laughs" document of a
/// few hundred bytes otherwise expands to gigabytes. Documents without aliases are bounded by
/// the size of their file.
const MAX_ALIAS_VALUES: usize = 1_000_000;

/// Parse a YAML (or JSON) document into a JSON value; an empty document is `null`.
pub fn parse(text: &str) -> Result<Value> {
    let mut loader = Loader {
        max_alias_values: crate::limits::env_cap("FTL2_YAML_MAX_ALIAS_VALUES", MAX_ALIAS_VALUES),
        ..Loader::default()
    };
    let mut parser = Parser::new_from_str(text);
    let parsed = parser.load(&mut loader, false);
    // A cap reached first is the reason, even if the parser gave up after it.
    if let Some(err) = loader.error {
        bail!(err);
    }
    parsed.map_err(|e| {
        // The parser's own cap on nesting (its recursion limit, about 256 levels).
        let why = if e.info().contains("recursion limit") {
            "it nests deeper than the YAML parser's limit of about 256 levels"
        } else {
            e.info()
        };
        anyhow!(
            "invalid YAML at line {}, column {}: {why}",
            e.marker().line(),
            e.marker().col() + 1,
        )
    })?;
    Ok(loader.done.unwrap_or(Value::Null))
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

#[derive(Default)]
struct Loader {
    stack: Vec<Frame>,
    /// Anchored values, with how many values each holds (what one alias to it adds).
    anchors: HashMap<usize, (Value, usize)>,
    done: Option<Value>,
    error: Option<String>,
    /// Values made so far, and where each open collection's count started.
    values: usize,
    starts: Vec<usize>,
    /// Values added by aliases so far.
    aliased: usize,
    max_alias_values: usize,
}

impl Loader {
    fn push_value(&mut self, v: Value, mark: Marker) {
        match self.stack.last_mut() {
            None => {
                if self.done.is_none() {
                    self.done = Some(v);
                }
            }
            Some(Frame::Seq(items, _)) => items.push(v),
            Some(Frame::Map(m, key, _)) => match key.take() {
                None => match key_text(&v) {
                    Some(k) => *key = Some(k),
                    None => {
                        self.error.get_or_insert(format!(
                            "line {}: a mapping key must be a scalar",
                            mark.line()
                        ));
                        *key = Some(String::new());
                    }
                },
                Some(k) => {
                    if k == "<<" {
                        // Merge keys: `<<: *defaults`.
                        match v {
                            Value::Object(src) => {
                                for (sk, sv) in src {
                                    m.entry(sk).or_insert(sv);
                                }
                            }
                            Value::Array(list) => {
                                for item in list {
                                    if let Value::Object(src) = item {
                                        for (sk, sv) in src {
                                            m.entry(sk).or_insert(sv);
                                        }
                                    }
                                }
                            }
                            other => {
                                m.insert(k, other);
                            }
                        }
                    } else {
                        m.insert(k, v);
                    }
                }
            },
        }
    }
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("null".into()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Loader {
    /// Count `n` more values (`aliased`: repeated by an alias); false (with the error set) past
    /// the alias cap.
    fn count(&mut self, n: usize, aliased: bool, mark: Marker) -> bool {
        self.values = self.values.saturating_add(n);
        if !aliased {
            return true;
        }
        self.aliased = self.aliased.saturating_add(n);
        if self.aliased > self.max_alias_values {
            self.error.get_or_insert(format!(
                "line {}: the YAML document's aliases expand to more than {} values; the cap is \
                 FTL2_YAML_MAX_ALIAS_VALUES",
                mark.line(),
                self.max_alias_values
            ));
            return false;
        }
        true
    }

    fn open(&mut self, frame: Frame) {
        self.starts.push(self.values);
        self.stack.push(frame);
    }
}

impl MarkedEventReceiver for Loader {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return; // the first error is the answer; nothing more is built
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, false, mark);
                let v = resolve(&text, style, tag.as_ref());
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), 1));
                }
                self.push_value(v, mark);
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => self.open(Frame::Map(Map::new(), None, anchor)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (v, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, a)) => (Value::Array(items), a),
                    Some(Frame::Map(m, _, a)) => (Value::Object(m), a),
                    None => return,
                };
                let start = self.starts.pop().unwrap_or(0);
                self.count(1, false, mark);
                if anchor > 0 {
                    let held = self.values.saturating_sub(start);
                    self.anchors.insert(anchor, (v.clone(), held));
                }
                self.push_value(v, mark);
            }
            Event::Alias(id) => {
                let (v, held) = self.anchors.get(&id).cloned().unwrap_or((Value::Null, 1));
                if !self.count(held, true, mark) {
                    return;
                }
                self.push_value(v, mark);
            }
            _ => {}
        }
    }
}

/// YAML 1.1 scalar resolution as PyYAML implements it (which, unlike the spec, leaves `y`/`n` strings),
/// for plain scalars only.
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(t) = tag {
        // `!unsafe 'x'`, `!!str 1`, `!vault ...`: the text stays a string. `!!int`/`!!float`/
        // `!!bool`/`!!null` force that type.
        return match (t.handle.as_str(), t.suffix.as_str()) {
            ("tag:yaml.org,2002:", "int") | ("!!", "int") => {
                int_value(text).unwrap_or_else(|| Value::String(text.into()))
            }
            ("tag:yaml.org,2002:", "float") | ("!!", "float") => {
                float_value(text).unwrap_or_else(|| Value::String(text.into()))
            }
            ("tag:yaml.org,2002:", "bool") | ("!!", "bool") => bool_value(text)
                .map(Value::Bool)
                .unwrap_or_else(|| Value::String(text.into())),
            ("tag:yaml.org,2002:", "null") | ("!!", "null") => Value::Null,
            _ => Value::String(text.into()),
        };
    }
    if style != TScalarStyle::Plain {
        return Value::String(text.into());
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = bool_value(text) {
        return Value::Bool(b);
    }
    if let Some(n) = int_value(text) {
        return n;
    }
    if let Some(f) = float_value(text) {
        return f;
    }
    Value::String(text.into())
}

fn bool_value(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn int_value(t: &str) -> Option<Value> {
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let n: i128 = if let Some(b) = clean.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(x) = clean.strip_prefix("0x") {
        i128::from_str_radix(x, 16).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') {
        i128::from_str_radix(&clean[1..], 8).ok()? // YAML 1.1 octal: 0644
    } else if clean.contains(':') {
        // Sexagesimal (190:20:30), YAML 1.1.
        let mut acc: i128 = 0;
        for part in clean.split(':') {
            acc = acc * 60 + part.parse::<i128>().ok()?;
        }
        acc
    } else if clean.chars().all(|c| c.is_ascii_digit()) {
        clean.parse().ok()?
    } else {
        return None;
    };
    let n = if neg { -n } else { n };
    if let Ok(i) = i64::try_from(n) {
        Some(Value::Number(Number::from(i)))
    } else if let Ok(u) = u64::try_from(n) {
        Some(Value::Number(Number::from(u)))
    } else {
        None
    }
}

fn float_value(t: &str) -> Option<Value> {
    let lower = t.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        ".inf" | ".nan" => return Some(Value::String(t.into())), // JSON has no inf/nan
        _ => {}
    }
    // PyYAML: [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)? -- a dot is required.
    if !t.contains('.')
        || t.chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    let f: f64 = clean.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_naming_the_cap() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&bomb).unwrap_err().to_string();
        assert!(err.contains("FTL2_YAML_MAX_ALIAS_VALUES"), "{err}");
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        let err = parse(&deep).unwrap_err().to_string();
        assert!(
            err.contains("nests deeper than the YAML parser's limit"),
            "{err}"
        );
        // Ordinary anchors and merge keys still work.
        let v = parse("d: &d {a: 1}\ne: {<<: *d, b: 2}\nf: [*d, *d]\n").unwrap();
        assert_eq!(
            v,
            json!({"d": {"a": 1}, "e": {"a": 1, "b": 2}, "f": [{"a": 1}, {"a": 1}]})
        );
    }

    #[test]
    fn yaml_1_1_scalars_like_pyyaml() {
        let v = parse("a: yes\nb: 'yes'\nc: no\nd: on\ne: 0644\nf: 0x1F\ng: 1_000\nh: 1.5\ni: ~\nj: 08\nk: \"0644\"\nl: 1.2.3\nm: Off\n").unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": "yes", "c": false, "d": true, "e": 420, "f": 31, "g": 1000, "h": 1.5,
                   "i": null, "j": "08", "k": "0644", "l": "1.2.3", "m": false})
        );
    }

    #[test]
    fn tags_anchors_and_merges() {
        let v = parse("!unsafe 'k': !unsafe 'v'\nbase: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\nlist: [*b]\nforced: !!str 12\n").unwrap();
        assert_eq!(
            v,
            json!({"k": "v", "base": {"x": 1, "y": 2}, "derived": {"y": 3, "x": 1}, "list": [{"x": 1, "y": 2}], "forced": "12"})
        );
    }

    #[test]
    fn errors_carry_the_line() {
        let err = parse("a: [unclosed\nb: 1\n").unwrap_err();
        assert!(format!("{err}").contains("line"), "{err}");
        assert_eq!(parse("").unwrap(), Value::Null);
        assert_eq!(
            parse("{\"json\": [1, true]}").unwrap(),
            json!({"json": [1, true]})
        );
    }
}
