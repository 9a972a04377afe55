//! Secrets from AWX (SSH key, passwords): a wrapper that keeps them out of logs and debug output.

use std::fmt;

/// A value that must never be shown: Debug prints `<redacted>`, and there is no Display.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a secret value.
    pub fn new(v: T) -> Self {
        Secret(v)
    }
    /// The secret itself, for the one place that must use it (an SSH login, a become prompt).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
