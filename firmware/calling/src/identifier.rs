//! Call targets and participant identifiers: a user id (`alice`) or a phone number normalised to E.164
//! (`+15551234567`), their SIP URIs, and parsing back from the SIP URIs that the signaling layer reports.

use std::fmt;

/// Why an identifier could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("empty identifier")]
    Empty,
    #[error("'{0}' is not a valid user id (letters, digits, '.', '_', '-'; 1 to 64 characters, starting with a letter or digit)")]
    InvalidUser(String),
    #[error("'{input}' is not a phone number that can be normalised to E.164: {why}")]
    InvalidPhone { input: String, why: &'static str },
    #[error("'{0}' is not a SIP URI (expected sip:user@domain)")]
    InvalidSipUri(String),
}

/// A call target or a remote participant's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identifier {
    /// A user of the service, registered at the SIP registrar as `sip:<id>@<domain>`.
    User(String),
    /// A phone number in E.164 form (`+` then 8 to 15 digits, no leading zero in the country code).
    Phone(String),
}

const MAX_USER_LEN: usize = 64;

impl Identifier {
    /// A user id, validated.
    pub fn user(id: &str) -> Result<Self, IdentifierError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let all_ok = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !all_ok || id.len() > MAX_USER_LEN {
            return Err(IdentifierError::InvalidUser(id.to_string()));
        }
        Ok(Identifier::User(id.to_ascii_lowercase()))
    }

    /// A phone number, normalised to E.164. Accepts `+` or the `00` international prefix, and the separators people
    /// write (spaces, `-`, `.`, `/`, parentheses). A number without an international prefix takes
    /// `default_country_code` (digits only, e.g. "1" or "44") when one is given, dropping one national trunk `0`.
    pub fn phone(input: &str, default_country_code: Option<&str>) -> Result<Self, IdentifierError> {
        let bad = |why| IdentifierError::InvalidPhone { input: input.to_string(), why };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let mut digits = String::with_capacity(16);
        let mut plus = false;
        for (i, c) in trimmed.chars().enumerate() {
            match c {
                '+' if i == 0 => plus = true,
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '/' | '(' | ')' => {}
                _ => return Err(bad("it contains a character that is not a digit or a separator")),
            }
        }
        let international = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else {
            let cc =
                default_country_code.ok_or_else(|| bad("it has no country code (+ or 00) and none is configured"))?;
            if cc.is_empty() || !cc.chars().all(|c| c.is_ascii_digit()) || cc.starts_with('0') || cc.len() > 3 {
                return Err(bad("the configured default country code is not 1 to 3 digits"));
            }
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            format!("{cc}{national}")
        };
        if international.starts_with('0') {
            return Err(bad("a country code cannot start with 0"));
        }
        if international.len() < 8 {
            return Err(bad("it is too short (E.164 numbers have 8 to 15 digits)"));
        }
        if international.len() > 15 {
            return Err(bad("it is too long (E.164 numbers have at most 15 digits)"));
        }
        Ok(Identifier::Phone(format!("+{international}")))
    }

    /// Parses what a person or a config file gives as a target: something that starts like a phone number (`+`,
    /// a digit, `(`) is a phone number, anything else a user id.
    pub fn parse(input: &str, default_country_code: Option<&str>) -> Result<Self, IdentifierError> {
        let t = input.trim();
        match t.chars().next() {
            None => Err(IdentifierError::Empty),
            Some(c) if c == '+' || c == '(' || c.is_ascii_digit() => Self::phone(t, default_country_code),
            Some(_) => Self::user(t),
        }
    }

    /// The identity named by a SIP URI (`sip:alice@example.org`, `"Alice" <sip:alice@example.org;transport=udp>`).
    pub fn from_sip_uri(uri: &str) -> Result<Self, IdentifierError> {
        let bad = || IdentifierError::InvalidSipUri(uri.to_string());
        let inner = match (uri.find('<'), uri.rfind('>')) {
            (Some(a), Some(b)) if a < b => &uri[a + 1..b],
            _ => uri.trim(),
        };
        let rest = inner.strip_prefix("sip:").or_else(|| inner.strip_prefix("sips:")).ok_or_else(bad)?;
        let user = rest.split('@').next().filter(|u| rest.contains('@') && !u.is_empty()).ok_or_else(bad)?;
        let user = user.split(';').next().unwrap_or(user);
        if user.starts_with('+') {
            Self::phone(user, None)
        } else {
            Self::user(user)
        }
    }

    /// Whether a SIP URI (as `from_sip_uri` takes it) names a party of `domain`: its host, without port or
    /// parameters, compared without case. A user id alone does not say which service it belongs to: `alice` of
    /// another domain is not our `alice`.
    pub fn sip_uri_in_domain(uri: &str, domain: &str) -> bool {
        let inner = match (uri.find('<'), uri.rfind('>')) {
            (Some(a), Some(b)) if a < b => &uri[a + 1..b],
            _ => uri.trim(),
        };
        let Some((_, host)) = inner.split_once('@') else { return false };
        let host = host.split([';', '?']).next().unwrap_or(host);
        // Without the port: an IPv6 host keeps its brackets.
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(host, |(addr, _)| addr),
            None => host.split(':').next().unwrap_or(host),
        };
        let domain = domain.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty() && host.eq_ignore_ascii_case(domain)
    }

    /// The SIP URI of this identity in `domain`.
    pub fn sip_uri(&self, domain: &str) -> String {
        format!("sip:{}@{}", self.as_str(), domain)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Identifier::User(s) | Identifier::Phone(s) => s,
        }
    }

    pub fn is_phone(&self) -> bool {
        matches!(self, Identifier::Phone(_))
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_validated_and_lowercased() {
        assert_eq!(Identifier::user("Alice").unwrap(), Identifier::User("alice".into()));
        assert_eq!(Identifier::user("front-door.1").unwrap().as_str(), "front-door.1");
        assert!(matches!(Identifier::user("-x"), Err(IdentifierError::InvalidUser(_))));
        assert!(matches!(Identifier::user("a b"), Err(IdentifierError::InvalidUser(_))));
        assert!(matches!(Identifier::user(&"a".repeat(65)), Err(IdentifierError::InvalidUser(_))));
        assert_eq!(Identifier::user("  "), Err(IdentifierError::Empty));
    }

    #[test]
    fn phone_numbers_normalise_to_e164() {
        let p = |s, cc| Identifier::phone(s, cc).map(|i| i.as_str().to_string());
        assert_eq!(p("+1 (555) 123-4567", None).unwrap(), "+15551234567");
        assert_eq!(p("0044 20 7946 0958", None).unwrap(), "+442079460958");
        assert_eq!(p("020 7946 0958", Some("44")).unwrap(), "+442079460958");
        assert_eq!(p("555.123.4567", Some("1")).unwrap(), "+15551234567");
    }

    #[test]
    fn bad_phone_numbers_say_why() {
        let why = |s, cc| match Identifier::phone(s, cc) {
            Err(IdentifierError::InvalidPhone { why, .. }) => why,
            other => panic!("expected an error, got {other:?}"),
        };
        assert!(why("5551234567", None).contains("no country code"));
        assert!(why("+1555", None).contains("too short"));
        assert!(why("+1234567890123456", None).contains("too long"));
        assert!(why("+1555abc4567", None).contains("not a digit"));
        assert!(why("+0555123456", None).contains("cannot start with 0"));
        assert!(why("5551234567", Some("0x")).contains("default country code"));
        assert!(why("1+5551234567", None).contains("not a digit"));
    }

    #[test]
    fn parse_tells_users_from_numbers() {
        assert!(Identifier::parse("+15551234567", None).unwrap().is_phone());
        assert!(!Identifier::parse("bob", None).unwrap().is_phone());
        assert!(Identifier::parse("(555) 123 4567", Some("1")).unwrap().is_phone());
    }

    #[test]
    fn sip_uris_both_ways() {
        let bob = Identifier::user("bob").unwrap();
        assert_eq!(bob.sip_uri("callbox.test"), "sip:bob@callbox.test");
        assert_eq!(Identifier::from_sip_uri("sip:bob@callbox.test").unwrap(), bob);
        assert_eq!(Identifier::from_sip_uri("\"Bob\" <sip:bob@callbox.test;transport=udp>").unwrap(), bob);
        assert_eq!(
            Identifier::from_sip_uri("sip:+15551234567@trunk").unwrap(),
            Identifier::Phone("+15551234567".into())
        );
        assert!(Identifier::from_sip_uri("tel:+1555").is_err());
        assert!(Identifier::from_sip_uri("sip:@x").is_err());
        assert!(Identifier::from_sip_uri("sip:bob").is_err());
        // The domain, for the full identity.
        assert!(Identifier::sip_uri_in_domain("\"Bob\" <sip:bob@Callbox.Test;transport=udp>", "callbox.test"));
        assert!(Identifier::sip_uri_in_domain("sip:bob@callbox.test:5060", "callbox.test"));
        assert!(!Identifier::sip_uri_in_domain("sip:bob@evil.example", "callbox.test"));
        assert!(!Identifier::sip_uri_in_domain("sip:bob@callbox.test.evil.example", "callbox.test"));
        assert!(!Identifier::sip_uri_in_domain("sip:bob", "callbox.test"));
    }
}
