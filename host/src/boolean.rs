//! Ansible's booleans: how `boolean()` reads the words and values scripts and AWX pass.

use serde_json::Value;

/// A word Ansible's `boolean()` reads as true (y, yes, on, 1, true, t; any case).
pub fn is_true_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "yes" | "on" | "1" | "true" | "t"
    )
}

/// A variable or argument as Ansible's `boolean()` reads it; `None` when it is not a scalar.
pub fn ansible_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => Some(is_true_word(s)),
        _ => None,
    }
}

/// Ansible's `boolean(strict=True)`: only its own spellings are booleans (module arguments).
pub fn ansible_bool_strict(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}
