//! The group-call invitation protocol (version 1): the small JSON documents that callbox appliances send one
//! another in SIP MESSAGE requests (through Kamailio, from the Janus sip plugin's account handle) to invite a
//! user into a call's video room, to withdraw an invitation and to decline one. Pure encoding and decoding with
//! the checks a receiver needs; what the messages mean for a call is the core's business. `docs/calling.md`
//! ("Group invitations") is the normative description.
//!
//! Compatibility: a receiver accepts any version-1 document and ignores fields it does not know (a newer sender
//! may add some); a document of another major version is refused with [`InvitationError::UnsupportedVersion`],
//! which the receiver answers by declining with 488. The optional `escalate` field (an invitation that moves a
//! 1:1 call into the room) was added within version 1 that way: absent means false.

use serde::{Deserialize, Serialize};

use crate::identifier::Identifier;
use crate::secret::Secret;

/// The SIP MESSAGE content type of the protocol.
pub const CONTENT_TYPE: &str = "application/vnd.callbox.group+json";
/// The protocol version this code writes and reads.
pub const VERSION: u32 = 1;
/// A document larger than this is refused unread (SIP MESSAGE bodies are small; this bounds what a peer can make
/// a device parse).
pub const MAX_DOCUMENT_BYTES: usize = 4096;
/// Bounds of the fields, checked on both sides.
pub const MAX_CALL_ID_LEN: usize = 64;
pub const MAX_SERVER_LEN: usize = 256;
pub const MAX_DISPLAY_NAME_LEN: usize = 128;
pub const MAX_PIN_LEN: usize = 64;
/// How long an invitation rings at most, whatever the sender asks (seconds).
pub const MAX_RING_SECS: u32 = 600;

/// The invitation's identity of the call: chosen by the inviter, unique per call (e.g. `"<user>-<room>"`),
/// carried by every message about that call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupCallId(String);

impl GroupCallId {
    /// A call id: 1 to 64 characters of `[A-Za-z0-9._-]`.
    pub fn new(id: impl Into<String>) -> Result<Self, InvitationError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_CALL_ID_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(GroupCallId(id))
        } else {
            Err(InvitationError::Invalid { field: "call_id", reason: "1 to 64 characters of A-Z a-z 0-9 . _ -" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GroupCallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An invitation into a call's room.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub call_id: GroupCallId,
    /// The Janus videoroom room number (1 to 2^53 - 1).
    pub room: u64,
    /// The room's PIN: what lets the invitee join. A secret: never logged.
    pub pin: Secret,
    /// The Janus server holding the room (`ws://` or `wss://` URL); the invitee uses its own when empty.
    pub server: String,
    /// Who invites.
    pub caller: Identifier,
    pub caller_display_name: Option<String>,
    /// Whether the call has video.
    pub video: bool,
    /// How long the invitee may ring before the invitation lapses (seconds, at most [`MAX_RING_SECS`]).
    pub ring_secs: u32,
    /// The invitation moves the 1:1 call the caller and the invitee are in into the room (the caller added a
    /// participant to it): the invitee's device in that call joins at once, without ringing. Wire field
    /// `escalate`, left out when false (a receiver reads its absence as false; older receivers ignore it).
    pub escalate: bool,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupMessage {
    /// Join the call's room.
    Invite(Invitation),
    /// The inviter withdraws the invitation (the call ended, or the invitee was removed before joining).
    Cancel { call_id: GroupCallId },
    /// The invitee will not join: 603 declined, 486 busy, 488 not understood (e.g. another version).
    Decline { call_id: GroupCallId, code: u16 },
}

impl GroupMessage {
    /// The call the message is about.
    pub fn call_id(&self) -> &GroupCallId {
        match self {
            GroupMessage::Invite(i) => &i.call_id,
            GroupMessage::Cancel { call_id } | GroupMessage::Decline { call_id, .. } => call_id,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    #[error("group message is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("group message is not a JSON document of the protocol: {0}")]
    Malformed(String),
    #[error("group message version {0} is not supported (this device speaks version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("group message kind {0:?} is unknown")]
    UnknownKind(String),
    #[error("group message field {field}: {reason}")]
    Invalid { field: &'static str, reason: &'static str },
}

/// The wire form: every kind in one flat object, `kind` saying which.
#[derive(Serialize, Deserialize)]
struct Wire {
    callbox_group: u32,
    kind: String,
    call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    video: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    escalate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

/// Only the version, read first so that another version is told apart from a malformed document.
#[derive(Deserialize)]
struct VersionOnly {
    callbox_group: u32,
}

/// The largest room number: 2^53 - 1, what JavaScript clients (janus.js) hold exactly.
pub const MAX_ROOM: u64 = (1 << 53) - 1;

fn invalid(field: &'static str, reason: &'static str) -> InvitationError {
    InvitationError::Invalid { field, reason }
}

fn check_invitation(i: &Invitation) -> Result<(), InvitationError> {
    if i.room == 0 || i.room > MAX_ROOM {
        return Err(invalid("room", "must be 1 to 2^53 - 1"));
    }
    let pin = i.pin.expose();
    if pin.is_empty() || pin.len() > MAX_PIN_LEN || pin.chars().any(char::is_control) {
        return Err(invalid("pin", "1 to 64 printable characters"));
    }
    let server_ok = i.server.is_empty()
        || (i.server.len() <= MAX_SERVER_LEN
            && (i.server.starts_with("ws://") || i.server.starts_with("wss://"))
            && !i.server.chars().any(|c| c.is_control() || c.is_whitespace()));
    if !server_ok {
        return Err(invalid("server", "empty, or a ws:// or wss:// URL of at most 256 characters"));
    }
    if i.caller_display_name.as_ref().is_some_and(|n| n.len() > MAX_DISPLAY_NAME_LEN || n.chars().any(char::is_control))
    {
        return Err(invalid("caller_display_name", "at most 128 printable characters"));
    }
    if i.ring_secs == 0 || i.ring_secs > MAX_RING_SECS {
        return Err(invalid("ring_secs", "must be 1 to 600"));
    }
    Ok(())
}

/// The JSON document of `message` (the SIP MESSAGE body, of type [`CONTENT_TYPE`]). Holds the PIN of an
/// invitation: never log it.
pub fn encode(message: &GroupMessage) -> Result<String, InvitationError> {
    let mut wire = Wire {
        callbox_group: VERSION,
        kind: String::new(),
        call_id: message.call_id().as_str().to_string(),
        room: None,
        pin: None,
        server: None,
        caller: None,
        caller_display_name: None,
        video: None,
        ring_secs: None,
        escalate: None,
        code: None,
    };
    match message {
        GroupMessage::Invite(i) => {
            check_invitation(i)?;
            wire.kind = "invite".into();
            wire.room = Some(i.room);
            wire.pin = Some(i.pin.expose().to_string());
            wire.server = Some(i.server.clone());
            wire.caller = Some(i.caller.to_string());
            wire.caller_display_name = i.caller_display_name.clone();
            wire.video = Some(i.video);
            wire.ring_secs = Some(i.ring_secs);
            wire.escalate = i.escalate.then_some(true);
        }
        GroupMessage::Cancel { .. } => wire.kind = "cancel".into(),
        GroupMessage::Decline { code, .. } => {
            if !(400..=699).contains(code) {
                return Err(invalid("code", "a SIP failure code, 400 to 699"));
            }
            wire.kind = "decline".into();
            wire.code = Some(*code);
        }
    }
    serde_json::to_string(&wire).map_err(|e| InvitationError::Malformed(e.to_string()))
}

/// Reads a document received in a SIP MESSAGE.
pub fn decode(body: &str) -> Result<GroupMessage, InvitationError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(InvitationError::TooLarge);
    }
    // Only serde's category goes into the error: no PIN can reach an error (and from there a log line).
    let version: VersionOnly = serde_json::from_str(body).map_err(|e| InvitationError::Malformed(category(&e)))?;
    if version.callbox_group != VERSION {
        return Err(InvitationError::UnsupportedVersion(version.callbox_group));
    }
    let wire: Wire = serde_json::from_str(body).map_err(|e| InvitationError::Malformed(category(&e)))?;
    let call_id = GroupCallId::new(wire.call_id)?;
    match wire.kind.as_str() {
        "invite" => {
            let caller = wire.caller.ok_or(invalid("caller", "missing"))?;
            let caller =
                Identifier::parse(&caller, None).map_err(|_| invalid("caller", "not a user id or phone number"))?;
            let invitation = Invitation {
                call_id,
                room: wire.room.ok_or(invalid("room", "missing"))?,
                pin: Secret::new(wire.pin.ok_or(invalid("pin", "missing"))?),
                server: wire.server.unwrap_or_default(),
                caller,
                caller_display_name: wire.caller_display_name,
                video: wire.video.unwrap_or(true),
                ring_secs: wire.ring_secs.unwrap_or(45),
                escalate: wire.escalate.unwrap_or(false),
            };
            check_invitation(&invitation)?;
            Ok(GroupMessage::Invite(invitation))
        }
        "cancel" => Ok(GroupMessage::Cancel { call_id }),
        "decline" => {
            let code = wire.code.ok_or(invalid("code", "missing"))?;
            if !(400..=699).contains(&code) {
                return Err(invalid("code", "a SIP failure code, 400 to 699"));
            }
            Ok(GroupMessage::Decline { call_id, code })
        }
        other => Err(InvitationError::UnknownKind(other.chars().filter(|c| !c.is_control()).take(32).collect())),
    }
}

/// What kind of JSON error it was (serde's category), never the input.
fn category(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "a field is missing or has the wrong type",
        serde_json::error::Category::Eof => "truncated",
    };
    what.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invitation() -> Invitation {
        Invitation {
            call_id: GroupCallId::new("door-a-4711").unwrap(),
            room: 4711,
            pin: Secret::new("83-secret-pin"),
            server: "wss://calls.example.com/janus".into(),
            caller: Identifier::user("door-a").unwrap(),
            caller_display_name: Some("Front door".into()),
            video: true,
            ring_secs: 45,
            escalate: false,
        }
    }

    #[test]
    fn an_invitation_round_trips_and_its_wire_form_is_the_documented_one() {
        let msg = GroupMessage::Invite(invitation());
        let text = encode(&msg).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["callbox_group"], 1);
        assert_eq!(v["kind"], "invite");
        assert_eq!(v["call_id"], "door-a-4711");
        assert_eq!(v["room"], 4711, "the room is a JSON integer");
        assert_eq!(v["pin"], "83-secret-pin");
        assert_eq!(v["caller"], "door-a");
        assert_eq!(v["video"], true);
        assert_eq!(v["ring_secs"], 45);
        assert!(v.get("code").is_none(), "absent fields are left out");
        assert!(v.get("escalate").is_none(), "an ordinary invitation says nothing of escalation");
        assert_eq!(decode(&text).unwrap(), msg);
    }

    #[test]
    fn cancel_and_decline_round_trip() {
        let id = GroupCallId::new("x.1_2-3").unwrap();
        for msg in [GroupMessage::Cancel { call_id: id.clone() }, GroupMessage::Decline { call_id: id, code: 603 }] {
            assert_eq!(decode(&encode(&msg).unwrap()).unwrap(), msg);
        }
    }

    #[test]
    fn the_pin_never_shows_in_debug_or_errors() {
        let msg = GroupMessage::Invite(invitation());
        assert!(!format!("{msg:?}").contains("83-secret-pin"));
        let bad = r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":"83-secret-pin","pin":"83-secret-pin"}"#;
        let err = decode(bad).unwrap_err();
        assert!(!err.to_string().contains("83-secret-pin"), "{err}");
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_apply() {
        let text = r#"{"callbox_group":1,"kind":"invite","call_id":"c1","room":9,"pin":"1234","caller":"+15551234567",
                       "future_field":{"x":1}}"#;
        let GroupMessage::Invite(i) = decode(text).unwrap() else { panic!("an invitation") };
        assert_eq!((i.room, i.video, i.ring_secs, i.server.as_str()), (9, true, 45, ""));
        assert!(i.caller.is_phone());
        assert!(!i.escalate, "no escalate field: an ordinary invitation");
    }

    #[test]
    fn an_escalation_is_written_as_escalate_true_and_read_back() {
        let mut i = invitation();
        i.escalate = true;
        let msg = GroupMessage::Invite(i);
        let text = encode(&msg).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["escalate"], true);
        assert_eq!(v["callbox_group"], 1, "still version 1: older receivers ignore the field");
        assert_eq!(decode(&text).unwrap(), msg);

        // What other senders may write: an explicit false, or true next to fields this device does not know.
        let base = r#""callbox_group":1,"kind":"invite","call_id":"c1","room":9,"pin":"1234","caller":"door-a""#;
        for (extra, escalate) in
            [(r#","escalate":false"#, false), (r#","escalate":true,"later":[1]"#, true), ("", false)]
        {
            let GroupMessage::Invite(i) = decode(&format!("{{{base}{extra}}}")).unwrap() else {
                panic!("an invitation")
            };
            assert_eq!(i.escalate, escalate, "{extra}");
        }
        assert!(decode(&format!(r#"{{{base},"escalate":"yes"}}"#)).is_err(), "escalate is a JSON boolean");
    }

    #[test]
    fn another_version_or_kind_is_refused_clearly() {
        assert_eq!(
            decode(r#"{"callbox_group":2,"kind":"invite","call_id":"c"}"#),
            Err(InvitationError::UnsupportedVersion(2))
        );
        assert_eq!(
            decode(r#"{"callbox_group":1,"kind":"ring\u0007ring","call_id":"c"}"#),
            Err(InvitationError::UnknownKind("ringring".into()))
        );
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        let cases = [
            "",
            "null",
            "[1,2]",
            "{",
            r#"{"kind":"invite"}"#,
            r#"{"callbox_group":"1","kind":"cancel","call_id":"c"}"#,
            r#"{"callbox_group":1,"kind":"cancel","call_id":""}"#,
            r#"{"callbox_group":1,"kind":"cancel","call_id":"a b"}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":0,"pin":"1","caller":"a"}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":9007199254740992,"pin":"1","caller":"a"}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":1,"pin":"","caller":"a"}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":1,"pin":"1","caller":"a","server":"http://x"}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":1,"pin":"1","caller":"a","ring_secs":601}"#,
            r#"{"callbox_group":1,"kind":"invite","call_id":"c","room":1,"pin":"1","caller":"not a user!"}"#,
            r#"{"callbox_group":1,"kind":"decline","call_id":"c","code":200}"#,
            r#"{"callbox_group":1,"kind":"decline","call_id":"c"}"#,
        ];
        for case in cases {
            assert!(decode(case).is_err(), "accepted: {case}");
        }
        assert_eq!(decode(&" ".repeat(MAX_DOCUMENT_BYTES + 1)), Err(InvitationError::TooLarge));
    }

    #[test]
    fn the_sender_checks_too() {
        let mut i = invitation();
        i.ring_secs = 0;
        assert!(encode(&GroupMessage::Invite(i)).is_err());
        let id = GroupCallId::new("c").unwrap();
        assert!(encode(&GroupMessage::Decline { call_id: id, code: 180 }).is_err());
        assert!(GroupCallId::new("x".repeat(65)).is_err());
    }
}
