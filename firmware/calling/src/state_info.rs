//! The peer-state INFO (`application/vnd.callbox.state+json`, version 1): the small JSON document a callbox sends
//! its 1:1 peer in a SIP INFO whenever its microphone or camera changes, so that the peer can show "muted" or
//! "camera off". Pure encoding and decoding; what the state means for a call is the core's business.
//!
//! Wire form: `{"v":1,"muted":false,"video":true}`. A receiver ignores fields it does not know, takes a missing
//! `muted` or `video` as "not said", and refuses another major version (the INFO is then logged and skipped).

use serde::{Deserialize, Serialize};

/// The SIP INFO content type of the document.
pub const CONTENT_TYPE: &str = "application/vnd.callbox.state+json";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// A larger document is refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 1024;

/// What a peer says of its microphone and camera (`None`: not said).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStateInfo {
    pub muted: Option<bool>,
    pub video_on: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateInfoError {
    #[error("state document of {0} bytes is larger than {MAX_DOCUMENT_BYTES}")]
    TooLarge(usize),
    #[error("state document is not valid: {0}")]
    Malformed(String),
    #[error("state document version {0} is not supported (this reads version {VERSION})")]
    UnsupportedVersion(u32),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    /// Absent in no sender we know of; taken as version 1.
    #[serde(default = "version_1")]
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    muted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    video: Option<bool>,
}

fn version_1() -> u32 {
    VERSION
}

/// The document telling the peer our microphone and camera state.
pub fn encode(muted: bool, video_on: bool) -> String {
    let wire = Wire { v: VERSION, muted: Some(muted), video: Some(video_on) };
    // A number and two booleans: serializing cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

/// Reads a peer's state document.
pub fn decode(body: &str) -> Result<PeerStateInfo, StateInfoError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(StateInfoError::TooLarge(body.len()));
    }
    // serde would also read the fields from a JSON array: the document is an object.
    if !body.trim_start().starts_with('{') {
        return Err(StateInfoError::Malformed("not a JSON object".into()));
    }
    let wire: Wire = serde_json::from_str(body).map_err(|e| StateInfoError::Malformed(e.to_string()))?;
    if wire.v != VERSION {
        return Err(StateInfoError::UnsupportedVersion(wire.v));
    }
    Ok(PeerStateInfo { muted: wire.muted, video_on: wire.video })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_to_the_same_state() {
        for (muted, video_on) in [(false, false), (false, true), (true, false), (true, true)] {
            let info = decode(&encode(muted, video_on)).expect("decodes");
            assert_eq!(info, PeerStateInfo { muted: Some(muted), video_on: Some(video_on) });
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        assert_eq!(encode(true, false), r#"{"v":1,"muted":true,"video":false}"#);
    }

    #[test]
    fn missing_fields_are_not_said_and_unknown_ones_are_ignored() {
        assert_eq!(decode(r#"{"v":1}"#), Ok(PeerStateInfo::default()));
        assert_eq!(decode(r#"{"muted":true}"#), Ok(PeerStateInfo { muted: Some(true), video_on: None }));
        assert_eq!(decode(r#"{"v":1,"video":false,"hand":"raised"}"#).map(|i| i.video_on), Ok(Some(false)));
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        for bad in ["", "not json", "[]", r#"{"muted":"yes"}"#, r#"{"v":"1"}"#, r#"{"video":1}"#] {
            assert!(matches!(decode(bad), Err(StateInfoError::Malformed(_))), "{bad:?}: {:?}", decode(bad));
        }
        assert_eq!(decode(r#"{"v":2,"muted":true}"#), Err(StateInfoError::UnsupportedVersion(2)));
        let huge = format!(r#"{{"v":1,"pad":"{}"}}"#, "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(matches!(decode(&huge), Err(StateInfoError::TooLarge(_))));
    }
}
