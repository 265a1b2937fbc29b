//! The publisher display of a callbox in a group call's room (version 1): the JSON document it joins a Janus
//! videoroom with as its `display`, so that the other members can tell who it is (and match it with their
//! invitations) and whether its microphone is muted (Janus tells the others about a changed display; about a
//! paused stream it does not). Pure encoding and decoding.
//!
//! Wire form: `{"id":"alice","name":"Alice","muted":true}` (`muted` only when true). The display of a member
//! that is not a callbox (a browser guest) is any text: it does not decode, and is shown as the member's name.

use serde::{Deserialize, Serialize};

use crate::identifier::Identifier;

/// Janus bounds a display; longer documents are not ours.
pub const MAX_DISPLAY_BYTES: usize = 512;
/// How much of a guest's display is kept as its name (characters).
pub const MAX_GUEST_NAME_CHARS: usize = 64;

/// What a callbox member's display says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherDisplay {
    pub user: Identifier,
    /// Its display name (`None`: it has none).
    pub name: Option<String>,
    pub muted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DisplayError {
    #[error("display of {0} bytes is larger than {MAX_DISPLAY_BYTES}")]
    TooLarge(usize),
    #[error("display is not a callbox document: {0}")]
    NotOurs(String),
    #[error("display names an unusable user: {0}")]
    BadUser(String),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    muted: bool,
}

impl PublisherDisplay {
    /// The display document.
    pub fn encode(&self) -> String {
        let wire =
            Wire { id: self.user.as_str().to_owned(), name: self.name.clone().unwrap_or_default(), muted: self.muted };
        // Two strings and a boolean: serializing cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a member's display; anything but a callbox document is an error (the member is a guest).
    pub fn decode(display: &str) -> Result<Self, DisplayError> {
        if display.len() > MAX_DISPLAY_BYTES {
            return Err(DisplayError::TooLarge(display.len()));
        }
        // serde would also read the fields from a JSON array: the document is an object.
        if !display.trim_start().starts_with('{') {
            return Err(DisplayError::NotOurs("not a JSON object".into()));
        }
        let wire: Wire = serde_json::from_str(display).map_err(|e| DisplayError::NotOurs(e.to_string()))?;
        let user = Identifier::user(&wire.id).map_err(|e| DisplayError::BadUser(e.to_string()))?;
        let name = Some(wire.name).filter(|n| !n.is_empty());
        Ok(PublisherDisplay { user, name, muted: wire.muted })
    }
}

/// What a member is shown as: a callbox user by its identity and name; a guest by its display text, shortened.
pub fn member_identity(display: Option<&str>) -> (Option<Identifier>, Option<String>) {
    match display.map(PublisherDisplay::decode) {
        Some(Ok(d)) => (Some(d.user), d.name),
        _ => (None, display.map(|d| d.chars().take(MAX_GUEST_NAME_CHARS).collect())),
    }
}

/// Whether a member's display says its microphone is muted (a guest's never does).
pub fn says_muted(display: Option<&str>) -> bool {
    display.and_then(|d| PublisherDisplay::decode(d).ok()).is_some_and(|d| d.muted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(name: Option<&str>, muted: bool) -> PublisherDisplay {
        PublisherDisplay { user: Identifier::user("alice").expect("id"), name: name.map(str::to_owned), muted }
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_display() {
        for d in [alice(None, false), alice(Some("Alice at the door"), true), alice(Some("Ünïcødé \"q\""), false)] {
            assert_eq!(PublisherDisplay::decode(&d.encode()), Ok(d));
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        assert_eq!(alice(Some("Alice"), true).encode(), r#"{"id":"alice","name":"Alice","muted":true}"#);
        assert_eq!(alice(None, false).encode(), r#"{"id":"alice","name":""}"#);
    }

    #[test]
    fn a_guest_display_is_its_name_shortened_and_never_muted() {
        let long = "G".repeat(100);
        assert_eq!(member_identity(Some(&long)), (None, Some("G".repeat(MAX_GUEST_NAME_CHARS))));
        assert_eq!(member_identity(Some("Bob's browser")), (None, Some("Bob's browser".into())));
        assert_eq!(member_identity(None), (None, None));
        assert!(!says_muted(Some("muted")));
        assert!(!says_muted(None));
    }

    #[test]
    fn malformed_displays_are_guests_with_a_reason() {
        assert!(matches!(PublisherDisplay::decode("{}"), Err(DisplayError::NotOurs(_))));
        assert!(matches!(PublisherDisplay::decode(r#"["alice","Alice",true]"#), Err(DisplayError::NotOurs(_))));
        assert!(matches!(PublisherDisplay::decode(r#"{"id":7}"#), Err(DisplayError::NotOurs(_))));
        assert!(matches!(PublisherDisplay::decode(r#"{"id":"a b@c"}"#), Err(DisplayError::BadUser(_))));
        assert!(matches!(PublisherDisplay::decode(r#"{"id":"alice","muted":"yes"}"#), Err(DisplayError::NotOurs(_))));
        let huge = format!(r#"{{"id":"alice","name":"{}"}}"#, "n".repeat(MAX_DISPLAY_BYTES));
        assert!(matches!(PublisherDisplay::decode(&huge), Err(DisplayError::TooLarge(_))));
        // A callbox document with an unusable user counts as a guest, shown by its text.
        assert_eq!(member_identity(Some(r#"{"id":""}"#)).0, None);
    }

    #[test]
    fn a_callbox_member_says_who_it_is_and_whether_it_is_muted() {
        let display = alice(Some("Alice"), true).encode();
        assert_eq!(
            member_identity(Some(&display)),
            (Some(Identifier::user("alice").expect("id")), Some("Alice".into()))
        );
        assert!(says_muted(Some(&display)));
        assert_eq!(member_identity(Some(r#"{"id":"alice","name":""}"#)).1, None);
    }
}
