//! `Secret`: a string that must never reach a log line, a `Debug` output or an error message
//! (tokens, SIP passwords, device keys, door codes). Reading it takes an explicit `expose()`; comparing it takes
//! the same time whatever the bytes; its memory is wiped when it is dropped.

use std::fmt;
use zeroize::Zeroize;

/// A secret string. `Debug` and `Display` print `[redacted]`; `==` and `ct_eq` compare in constant time (the
/// length is not hidden); dropping it overwrites its bytes.
#[derive(Clone, Default)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.expose())
    }
}

impl Eq for Secret {}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (a request body, an HMAC).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison (length is not hidden).
    pub fn ct_eq(&self, other: &str) -> bool {
        let a = self.0.as_bytes();
        let b = other.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        // `black_box` keeps the optimiser from turning the fold into an early exit.
        std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-token");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn constant_time_equality() {
        let s = Secret::new("1234");
        assert!(s.ct_eq("1234"));
        assert!(!s.ct_eq("1235"));
        assert!(!s.ct_eq("123"));
        assert_eq!(s, Secret::new("1234"));
        assert_ne!(s, Secret::new("1243"));
    }
}
