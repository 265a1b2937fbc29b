//! Typed requests and events of Janus's VideoRoom plugin (`janus.plugin.videoroom`, multistream, names and
//! fields checked against Janus 1.1.2 `src/plugins/janus_videoroom.c` with `string_ids = false`), and the
//! `VideoRoomHandle` wrapper with typed async methods: the protocol brick of group calls.
//!
//! One participant uses two handles: a publisher ("manager") handle that joins the room, publishes its own
//! streams and receives the room notifications, and a subscriber handle with one recvonly PeerConnection for
//! every remote stream. Conventions: room and participant ids are JSON integers at most 2^53-1; callbox
//! describes its camera stream `"camera"` and a screen share `"screen"` (see `PublisherStream::is_screen_share`).

#![warn(missing_docs)]

use callbox_calling::Secret;
use serde_json::{json, Map, Value};

use super::error::{Result, SignalingError};
use super::event::{HandleEvent, JanusEvent, Jsep};
use super::handle::{FromHandleEvent, PluginEvents, PluginHandle};
use super::janus::JanusSession;

/// The VideoRoom plugin's package name.
pub const VIDEOROOM_PLUGIN: &str = "janus.plugin.videoroom";

/// The largest room or participant id: 2^53-1, what JavaScript clients can hold exactly.
pub const MAX_ID: u64 = callbox_calling::invitation::MAX_ROOM;

/// The stream description callbox gives its camera.
pub const CAMERA_DESCRIPTION: &str = "camera";

/// The stream description callbox gives a screen share.
pub const SCREEN_DESCRIPTION: &str = "screen";

/// A room id from a random number: the low 53 bits, never 0 (0 becomes 1).
pub fn room_id_from(random: u64) -> u64 {
    match random & MAX_ID {
        0 => 1,
        id => id,
    }
}

/// Inserts `key: value` unless the secret is empty (an empty secret or pin means "none").
fn put_secret(body: &mut Map<String, Value>, key: &str, secret: &Secret) {
    if !secret.is_empty() {
        body.insert(key.into(), json!(secret.expose()));
    }
}

/// The `create` request: a private, non-permanent room. Empty `secret`/`pin`/`admin_key` are left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateRoom {
    /// Room id (1..=`MAX_ID`, see `room_id_from`).
    pub room: u64,
    /// Free text (Janus default: `Room <id>`; left out when empty).
    pub description: String,
    /// Needed to destroy the room, kick and moderate.
    pub secret: Secret,
    /// Needed to join, by publishers and subscribers alike.
    pub pin: Secret,
    /// The plugin's `admin_key` (the token's room grant): a Janus configured with one refuses `create` without it
    /// (error 429 missing, 433 wrong).
    pub admin_key: Secret,
    /// Most concurrently active publishers (Janus default 3; the next one gets error 432).
    pub publishers: u32,
    /// Allowed audio codecs in room-preference order, comma-separated (`"opus"`; empty: Janus default opus).
    pub audio_codecs: String,
    /// Allowed video codecs in room-preference order, comma-separated (`"vp8,h264"`; empty: Janus default vp8).
    pub video_codecs: String,
    /// Send `talking`/`stopped-talking` events (publishers must send the ssrc-audio-level extension).
    pub audiolevel_event: bool,
    /// Packets per talk-detection window (> 0; only sent with `audiolevel_event`).
    pub audio_active_packets: u32,
    /// Average level (-dBov, 1..127) below which a window counts as talking (only sent with `audiolevel_event`).
    pub audio_level_average: u8,
    /// Tell participants about joiners that do not publish (yet): `joining` events and `attendees`.
    pub notify_joining: bool,
    /// Subscribers must give their publisher's `private_id`.
    pub require_pvtid: bool,
}

impl CreateRoom {
    /// The plugin request body (contains the secret, pin and admin key: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("create"));
        put_secret(&mut body, "admin_key", &self.admin_key);
        body.insert("room".into(), json!(self.room));
        body.insert("permanent".into(), json!(false));
        body.insert("is_private".into(), json!(true));
        if !self.description.is_empty() {
            body.insert("description".into(), json!(self.description));
        }
        put_secret(&mut body, "secret", &self.secret);
        put_secret(&mut body, "pin", &self.pin);
        if self.publishers > 0 {
            body.insert("publishers".into(), json!(self.publishers));
        }
        if !self.audio_codecs.is_empty() {
            body.insert("audiocodec".into(), json!(self.audio_codecs));
        }
        if !self.video_codecs.is_empty() {
            body.insert("videocodec".into(), json!(self.video_codecs));
        }
        body.insert("audiolevel_event".into(), json!(self.audiolevel_event));
        if self.audiolevel_event {
            body.insert("audio_active_packets".into(), json!(self.audio_active_packets));
            body.insert("audio_level_average".into(), json!(self.audio_level_average));
        }
        body.insert("notify_joining".into(), json!(self.notify_joining));
        body.insert("require_pvtid".into(), json!(self.require_pvtid));
        Value::Object(body)
    }
}

/// The `join` request of a publisher (participant) handle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinPublisher {
    /// Room id.
    pub room: u64,
    /// The room's pin (left out when empty).
    pub pin: Secret,
    /// Name shown to the others (left out when empty).
    pub display: String,
    /// Our participant id (Janus picks one when absent; error 436 when taken).
    pub id: Option<u64>,
}

impl JoinPublisher {
    /// The plugin request body (contains the pin: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("join"));
        body.insert("ptype".into(), json!("publisher"));
        body.insert("room".into(), json!(self.room));
        put_secret(&mut body, "pin", &self.pin);
        if !self.display.is_empty() {
            body.insert("display".into(), json!(self.display));
        }
        if let Some(id) = self.id {
            body.insert("id".into(), json!(id));
        }
        Value::Object(body)
    }
}

/// The `publish` request, sent with a JSEP offer; with `renegotiate` it is a `configure` (any offer after
/// the first one: `publish` while published gives error 434).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Publish {
    /// Send `configure` instead of `publish` (renegotiation, e.g. adding a screen share).
    pub renegotiate: bool,
    /// `(mid, description)` of our streams (`"camera"`, `"screen"`, ...).
    pub descriptions: Vec<(String, String)>,
    /// Our own talk-detection threshold (-dBov), overriding the room's.
    pub audio_level_average: Option<u8>,
    /// Our own talk-detection window in packets, overriding the room's.
    pub audio_active_packets: Option<u32>,
}

impl Publish {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!(if self.renegotiate { "configure" } else { "publish" }));
        if !self.descriptions.is_empty() {
            let list: Vec<Value> =
                self.descriptions.iter().map(|(mid, d)| json!({ "mid": mid, "description": d })).collect();
            body.insert("descriptions".into(), Value::Array(list));
        }
        // Janus's validator misspells this one (`audio_level_averge`) but reads it as an integer.
        if let Some(v) = self.audio_level_average {
            body.insert("audio_level_average".into(), json!(v));
        }
        if let Some(v) = self.audio_active_packets {
            body.insert("audio_active_packets".into(), json!(v));
        }
        Value::Object(body)
    }
}

/// Sending on or off for one stream of a `ConfigureStreams`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSend {
    /// The stream's mid: our own mid on a publisher handle, the subscriber mid on a subscriber handle.
    pub mid: String,
    /// false: stop relaying (no event tells the others), true: resume.
    pub send: bool,
}

/// `configure` without SDP: per-stream sending on or off (self-mute, video off, pausing a remote stream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigureStreams {
    /// The streams to switch.
    pub streams: Vec<StreamSend>,
}

impl ConfigureStreams {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        let streams: Vec<Value> = self.streams.iter().map(|s| json!({ "mid": s.mid, "send": s.send })).collect();
        json!({ "request": "configure", "streams": streams })
    }
}

/// `configure` of a publisher's display: Janus tells every member at once (`display` event); callbox tells its
/// mute that way (`callbox_calling::publisher_display`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigureDisplay {
    /// The new display.
    pub display: String,
}

impl ConfigureDisplay {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "configure", "display": self.display })
    }
}

/// The `unpublish` request: closes the publisher's PeerConnection, the others get `unpublished`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpublish;

impl Unpublish {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "unpublish" })
    }
}

/// The `leave` request (publisher: leaves the room; subscriber: closes its PeerConnection).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leave;

impl Leave {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "leave" })
    }
}

/// One stream to subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeStream {
    /// The publisher's participant id.
    pub feed: u64,
    /// The publisher's mid; `None`: every stream of that publisher.
    pub mid: Option<String>,
}

impl SubscribeStream {
    fn to_json(&self) -> Value {
        match &self.mid {
            Some(mid) => json!({ "feed": self.feed, "mid": mid }),
            None => json!({ "feed": self.feed }),
        }
    }
}

/// One subscription to drop: by publisher (`feed`, optionally its `mid`) or by our own slot (`sub_mid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnsubscribeStream {
    /// The publisher's participant id.
    pub feed: Option<u64>,
    /// The publisher's mid (with `feed`).
    pub mid: Option<String>,
    /// Our subscriber mid.
    pub sub_mid: Option<String>,
}

impl UnsubscribeStream {
    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        if let Some(feed) = self.feed {
            entry.insert("feed".into(), json!(feed));
        }
        if let Some(mid) = &self.mid {
            entry.insert("mid".into(), json!(mid));
        }
        if let Some(sub_mid) = &self.sub_mid {
            entry.insert("sub_mid".into(), json!(sub_mid));
        }
        Value::Object(entry)
    }
}

/// The `join` request of a subscriber handle: one PeerConnection for all the listed streams.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinSubscriber {
    /// Room id.
    pub room: u64,
    /// The room's pin (left out when empty).
    pub pin: Secret,
    /// Our publisher handle's `private_id` (required by rooms with `require_pvtid`).
    pub private_id: Option<u32>,
    /// The streams to receive (every feed must have an active PeerConnection, else error 428).
    pub streams: Vec<SubscribeStream>,
}

impl JoinSubscriber {
    /// The plugin request body (contains the pin: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("join"));
        body.insert("ptype".into(), json!("subscriber"));
        body.insert("room".into(), json!(self.room));
        put_secret(&mut body, "pin", &self.pin);
        if let Some(id) = self.private_id {
            body.insert("private_id".into(), json!(id));
        }
        body.insert("streams".into(), Value::Array(self.streams.iter().map(SubscribeStream::to_json).collect()));
        Value::Object(body)
    }
}

/// The `start` request, sent with our JSEP answer to a subscriber offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Start;

impl Start {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "start" })
    }
}

/// The `update` request of a subscriber handle: unsubscriptions (applied first) and subscriptions at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Streams to add.
    pub subscribe: Vec<SubscribeStream>,
    /// Streams to drop (their m-lines stay, inactive).
    pub unsubscribe: Vec<UnsubscribeStream>,
}

impl Update {
    /// The plugin request body (empty lists are left out).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("update"));
        if !self.subscribe.is_empty() {
            body.insert("subscribe".into(), self.subscribe.iter().map(SubscribeStream::to_json).collect());
        }
        if !self.unsubscribe.is_empty() {
            body.insert("unsubscribe".into(), self.unsubscribe.iter().map(UnsubscribeStream::to_json).collect());
        }
        Value::Object(body)
    }
}

/// The `kick` request (needs the room secret).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kick {
    /// Room id.
    pub room: u64,
    /// The room secret (left out when empty: error 429 on a room with a secret).
    pub secret: Secret,
    /// The participant to kick.
    pub id: u64,
}

impl Kick {
    /// The plugin request body (contains the secret: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("kick"));
        body.insert("room".into(), json!(self.room));
        put_secret(&mut body, "secret", &self.secret);
        body.insert("id".into(), json!(self.id));
        Value::Object(body)
    }
}

/// The `moderate` request: mutes or unmutes one publisher stream for everyone (needs the room secret).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moderate {
    /// Room id.
    pub room: u64,
    /// The room secret (left out when empty).
    pub secret: Secret,
    /// The publisher.
    pub id: u64,
    /// The publisher's mid.
    pub mid: String,
    /// true: mute, false: lift the moderation.
    pub mute: bool,
}

impl Moderate {
    /// The plugin request body (contains the secret: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("moderate"));
        body.insert("room".into(), json!(self.room));
        put_secret(&mut body, "secret", &self.secret);
        body.insert("id".into(), json!(self.id));
        body.insert("mid".into(), json!(self.mid));
        body.insert("mute".into(), json!(self.mute));
        Value::Object(body)
    }
}

/// The `destroy` request (needs the room secret); participants get `destroyed`, subscribers nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Destroy {
    /// Room id.
    pub room: u64,
    /// The room secret (left out when empty).
    pub secret: Secret,
}

impl Destroy {
    /// The plugin request body (contains the secret: never log it).
    pub fn to_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("request".into(), json!("destroy"));
        body.insert("room".into(), json!(self.room));
        put_secret(&mut body, "secret", &self.secret);
        body.insert("permanent".into(), json!(false));
        Value::Object(body)
    }
}

/// The `exists` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exists {
    /// Room id.
    pub room: u64,
}

impl Exists {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "exists", "room": self.room })
    }
}

/// The `listparticipants` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListParticipants {
    /// Room id.
    pub room: u64,
}

impl ListParticipants {
    /// The plugin request body.
    pub fn to_body(&self) -> Value {
        json!({ "request": "listparticipants", "room": self.room })
    }
}

/// The media type of a stream (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    /// An audio m-line.
    Audio,
    /// A video m-line.
    Video,
    /// The data channel m-line.
    Data,
}

impl StreamType {
    fn parse(v: &Value) -> Parsed<StreamType> {
        match v.get("type").and_then(Value::as_str) {
            Some("audio") => Ok(StreamType::Audio),
            Some("video") => Ok(StreamType::Video),
            Some("data") => Ok(StreamType::Data),
            _ => Err("missing or invalid stream 'type'".into()),
        }
    }
}

/// One stream of a publisher, as `joined`, `publishers` and `configured` list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherStream {
    /// Media type.
    pub kind: StreamType,
    /// Position of the m-line in the publisher's SDP.
    pub mindex: u32,
    /// The publisher's mid.
    pub mid: String,
    /// Negotiated codec (absent when disabled).
    pub codec: Option<String>,
    /// The publisher's label (`"camera"`, `"screen"`, ...; absent when disabled).
    pub description: Option<String>,
    /// The m-line is recvonly/inactive or has no acceptable codec: nothing is relayed.
    pub disabled: bool,
    /// Muted by a moderator.
    pub moderated: bool,
}

impl PublisherStream {
    /// A screen share: callbox describes its camera `"camera"` and a screen share `"screen"` (an application
    /// convention: Janus does not interpret descriptions).
    pub fn is_screen_share(&self) -> bool {
        self.kind == StreamType::Video && self.description.as_deref() == Some(SCREEN_DESCRIPTION)
    }

    fn parse(v: &Value) -> Parsed<PublisherStream> {
        Ok(PublisherStream {
            kind: StreamType::parse(v)?,
            mindex: need_u32(v, "mindex")?,
            mid: need_str(v, "mid")?,
            codec: opt_str(v, "codec"),
            description: opt_str(v, "description"),
            disabled: flag(v, "disabled"),
            moderated: flag(v, "moderated"),
        })
    }
}

/// An active publisher (its PeerConnection is up) and its complete stream list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publisher {
    /// Participant id.
    pub id: u64,
    /// Display name, if it gave one.
    pub display: Option<String>,
    /// Every stream, disabled ones included.
    pub streams: Vec<PublisherStream>,
}

impl Publisher {
    fn parse(v: &Value) -> Parsed<Publisher> {
        Ok(Publisher {
            id: need_u64(v, "id")?,
            display: opt_str(v, "display"),
            streams: list(v, "streams", PublisherStream::parse)?,
        })
    }
}

/// A participant that joined without (yet) publishing (listed only in rooms with `notify_joining`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attendee {
    /// Participant id.
    pub id: u64,
    /// Display name, if it gave one.
    pub display: Option<String>,
}

impl Attendee {
    fn parse(v: &Value) -> Parsed<Attendee> {
        Ok(Attendee { id: need_u64(v, "id")?, display: opt_str(v, "display") })
    }
}

/// One entry of `listparticipants`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Participant id.
    pub id: u64,
    /// Display name, if it gave one.
    pub display: Option<String>,
    /// Its PeerConnection is up (an active publisher).
    pub publisher: bool,
    /// Talking state, only for publishers with talk detection.
    pub talking: Option<bool>,
}

impl Participant {
    fn parse(v: &Value) -> Parsed<Participant> {
        Ok(Participant {
            id: need_u64(v, "id")?,
            display: opt_str(v, "display"),
            publisher: flag(v, "publisher"),
            talking: v.get("talking").and_then(Value::as_bool),
        })
    }
}

/// One m-line of a subscriber PeerConnection (`attached`/`updated` `streams`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberStream {
    /// Position of the m-line in the offer.
    pub mindex: u32,
    /// Our subscriber mid (Janus's own, not the publisher's: see `feed_mid`).
    pub mid: String,
    /// Media type.
    pub kind: StreamType,
    /// false: an emptied slot (unsubscribed or its publisher left), inactive in the SDP.
    pub active: bool,
    /// The publisher feeding this slot.
    pub feed_id: Option<u64>,
    /// The publisher's mid of the source stream.
    pub feed_mid: Option<String>,
    /// The publisher's display name.
    pub feed_display: Option<String>,
    /// The publisher's description of the source stream (`"camera"`, `"screen"`).
    pub feed_description: Option<String>,
    /// Codec of the relayed stream.
    pub codec: Option<String>,
}

impl SubscriberStream {
    fn parse(v: &Value) -> Parsed<SubscriberStream> {
        Ok(SubscriberStream {
            mindex: need_u32(v, "mindex")?,
            mid: need_str(v, "mid")?,
            kind: StreamType::parse(v)?,
            active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
            feed_id: v.get("feed_id").and_then(Value::as_u64),
            feed_mid: opt_str(v, "feed_mid"),
            feed_display: opt_str(v, "feed_display"),
            feed_description: opt_str(v, "feed_description"),
            codec: opt_str(v, "codec"),
        })
    }
}

/// The `joined` answer of a publisher join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Room id.
    pub room: u64,
    /// The room's description.
    pub description: Option<String>,
    /// Our participant id.
    pub id: u64,
    /// Our private id (for `JoinSubscriber::private_id`).
    pub private_id: u32,
    /// The active publishers already in the room.
    pub publishers: Vec<Publisher>,
    /// The other participants not publishing (only with `notify_joining`).
    pub attendees: Vec<Attendee>,
}

/// What the answer to an `update` was.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOutcome {
    /// A new offer with every stream (old and new): answer it with `start`.
    Offer {
        /// All the m-lines of the new offer.
        streams: Vec<SubscriberStream>,
        /// The offer.
        jsep: Jsep,
    },
    /// Nothing changed (no offer).
    Unchanged,
    /// An earlier offer is unanswered: the changes come as an `Updated` event (no transaction) after `start`.
    Postponed,
}

/// Everything the VideoRoom plugin (and Janus, for this handle) reports. Total: what cannot be read is
/// `Unknown`, with a short description that never contains values (callers log it and skip it).
#[derive(Clone, Debug, PartialEq)]
pub enum VideoRoomEvent {
    /// `create` answer.
    Created {
        /// Room id.
        room: u64,
    },
    /// Publisher `join` answer.
    Joined(Joined),
    /// A publisher's PeerConnection came up, or it renegotiated or changed descriptions: full stream lists
    /// (diff by `id` + `mid`).
    Publishers {
        /// Room id.
        room: u64,
        /// The new or changed publishers.
        publishers: Vec<Publisher>,
    },
    /// `publish`/`configure` answer; with an offer, `jsep` is Janus's answer.
    Configured {
        /// Our streams as Janus accepted them (empty for a configure without SDP).
        streams: Vec<PublisherStream>,
        /// The SDP answer.
        jsep: Option<Jsep>,
    },
    /// Another publisher's PeerConnection went away.
    Unpublished {
        /// Room id.
        room: u64,
        /// The participant.
        id: u64,
    },
    /// Our `unpublish` answer.
    UnpublishedOk,
    /// Another participant left.
    Leaving {
        /// Room id.
        room: u64,
        /// The participant.
        id: u64,
    },
    /// We left: our `leave` answer, or `reason` `"kicked"` when a moderator kicked us.
    LeavingOk {
        /// Why, when we did not ask (`"kicked"`).
        reason: Option<String>,
    },
    /// Another participant was kicked.
    Kicked {
        /// Room id.
        room: u64,
        /// The participant.
        id: u64,
    },
    /// A participant joined (only in rooms with `notify_joining`).
    Joining {
        /// Room id.
        room: u64,
        /// The participant.
        id: u64,
        /// Its display name.
        display: Option<String>,
    },
    /// A publisher's audio stream started talking (also sent to the speaker).
    Talking {
        /// Room id.
        room: u64,
        /// The publisher.
        id: u64,
        /// The publisher's audio mid.
        mid: String,
        /// Average level of the window, in -dBov (0 loud, 127 silence).
        level_dbov: f64,
    },
    /// A publisher's audio stream stopped talking.
    StoppedTalking {
        /// Room id.
        room: u64,
        /// The publisher.
        id: u64,
        /// The publisher's audio mid.
        mid: String,
        /// Average level of the window, in -dBov.
        level_dbov: f64,
    },
    /// A moderator muted or unmuted a publisher stream (also sent to the target).
    Moderation {
        /// Room id.
        room: u64,
        /// The publisher.
        id: u64,
        /// The publisher's mid.
        mid: String,
        /// true: muted.
        muted: bool,
    },
    /// A participant changed its display name.
    DisplayChanged {
        /// The participant.
        id: u64,
        /// The new name.
        display: String,
    },
    /// The room was destroyed (the `destroy` answer, and the notification to participants).
    Destroyed {
        /// Room id.
        room: u64,
    },
    /// Subscriber `join` answer, with Janus's offer.
    Attached {
        /// Room id.
        room: u64,
        /// The m-lines of the offer.
        streams: Vec<SubscriberStream>,
        /// The offer.
        jsep: Option<Jsep>,
    },
    /// Subscription change: with an offer (all streams) or without (nothing changed). Also arrives without a
    /// transaction (autoupdate, postponed changes).
    Updated {
        /// Room id.
        room: u64,
        /// All the m-lines of the new offer (empty without offer).
        streams: Vec<SubscriberStream>,
        /// The offer.
        jsep: Option<Jsep>,
    },
    /// Subscription change postponed: an earlier offer is still unanswered.
    Updating {
        /// Room id.
        room: u64,
    },
    /// `start` answer: the subscriber PeerConnection is set up.
    Started,
    /// Subscriber `leave` answer.
    Left,
    /// A synchronous `success` (`kick`, `moderate`; `exists` carries `exists`).
    Success {
        /// Room id, when given.
        room: Option<u64>,
        /// The `exists` answer.
        exists: Option<bool>,
    },
    /// `listparticipants` answer.
    Participants {
        /// Room id.
        room: u64,
        /// Everyone joined as publisher-type participant.
        participants: Vec<Participant>,
    },
    /// An asynchronous plugin error (`error_code` 421-437, see janus_videoroom.c).
    Error {
        /// The plugin's error code.
        code: i64,
        /// The plugin's text.
        message: String,
    },
    /// Janus's own event about the handle: its PeerConnection, or the handle's end.
    Janus(JanusEvent),
    /// Anything else: a description without values (safe to log).
    Unknown(String),
}

type Parsed<T> = std::result::Result<T, String>;

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn need_str(v: &Value, key: &str) -> Parsed<String> {
    opt_str(v, key).ok_or_else(|| format!("missing or invalid '{key}'"))
}

fn need_u64(v: &Value, key: &str) -> Parsed<u64> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| format!("missing or invalid '{key}'"))
}

fn need_u32(v: &Value, key: &str) -> Parsed<u32> {
    need_u64(v, key).and_then(|n| u32::try_from(n).map_err(|_| format!("'{key}' out of range")))
}

fn need_f64(v: &Value, key: &str) -> Parsed<f64> {
    v.get(key).and_then(Value::as_f64).ok_or_else(|| format!("missing or invalid '{key}'"))
}

/// The array at `key` read with `item` (absent: empty; not an array or a bad entry: an error).
fn list<T>(v: &Value, key: &str, item: fn(&Value) -> Parsed<T>) -> Parsed<Vec<T>> {
    match v.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(entries)) => {
            entries.iter().map(item).collect::<Parsed<Vec<T>>>().map_err(|e| format!("'{key}': {e}"))
        }
        Some(_) => Err(format!("'{key}' is not an array")),
    }
}

impl VideoRoomEvent {
    /// Reads the plugin's `data` (`{"videoroom": "...", ...}`) and its JSEP. Never fails: what cannot be read
    /// is `Unknown`.
    pub fn parse(data: &Value, jsep: Option<Jsep>) -> VideoRoomEvent {
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            return VideoRoomEvent::Error { code, message: opt_str(data, "error").unwrap_or_default() };
        }
        let Some(kind) = data.get("videoroom").and_then(Value::as_str) else {
            return VideoRoomEvent::Unknown("plugin data without 'videoroom'".into());
        };
        match Self::parse_kind(kind, data, jsep) {
            Ok(event) => event,
            Err(what) => VideoRoomEvent::Unknown(format!("'{kind}': {what}")),
        }
    }

    fn parse_kind(kind: &str, data: &Value, jsep: Option<Jsep>) -> Parsed<VideoRoomEvent> {
        let room = || need_u64(data, "room");
        Ok(match kind {
            "event" => return Self::parse_event(data, jsep),
            "created" => VideoRoomEvent::Created { room: room()? },
            "joined" => VideoRoomEvent::Joined(Joined {
                room: room()?,
                description: opt_str(data, "description"),
                id: need_u64(data, "id")?,
                private_id: need_u32(data, "private_id")?,
                publishers: list(data, "publishers", Publisher::parse)?,
                attendees: list(data, "attendees", Attendee::parse)?,
            }),
            "destroyed" => VideoRoomEvent::Destroyed { room: room()? },
            "attached" => VideoRoomEvent::Attached {
                room: room()?,
                streams: list(data, "streams", SubscriberStream::parse)?,
                jsep,
            },
            "updated" => VideoRoomEvent::Updated {
                room: room()?,
                streams: list(data, "streams", SubscriberStream::parse)?,
                jsep,
            },
            "updating" => VideoRoomEvent::Updating { room: room()? },
            "talking" | "stopped-talking" => {
                let (room, id, mid) = (room()?, need_u64(data, "id")?, need_str(data, "mid")?);
                let level_dbov = need_f64(data, "audio-level-dBov-avg")?;
                if kind == "talking" {
                    VideoRoomEvent::Talking { room, id, mid, level_dbov }
                } else {
                    VideoRoomEvent::StoppedTalking { room, id, mid, level_dbov }
                }
            }
            "success" => {
                let exists = match data.get("exists") {
                    None => None,
                    Some(v) => Some(v.as_bool().ok_or("'exists' is not a bool")?),
                };
                VideoRoomEvent::Success { room: data.get("room").and_then(Value::as_u64), exists }
            }
            "participants" => VideoRoomEvent::Participants {
                room: room()?,
                participants: list(data, "participants", Participant::parse)?,
            },
            _ => return Err("unknown kind".into()),
        })
    }

    /// `{"videoroom": "event", ...}`: told apart by which key it carries.
    fn parse_event(data: &Value, jsep: Option<Jsep>) -> Parsed<VideoRoomEvent> {
        let room = || need_u64(data, "room");
        if data.get("configured").is_some() {
            return Ok(VideoRoomEvent::Configured { streams: list(data, "streams", PublisherStream::parse)?, jsep });
        }
        if data.get("publishers").is_some() {
            return Ok(VideoRoomEvent::Publishers {
                room: room()?,
                publishers: list(data, "publishers", Publisher::parse)?,
            });
        }
        if let Some(v) = data.get("unpublished") {
            return match (v.as_str(), v.as_u64()) {
                (Some("ok"), _) => Ok(VideoRoomEvent::UnpublishedOk),
                (_, Some(id)) => Ok(VideoRoomEvent::Unpublished { room: room()?, id }),
                _ => Err("invalid 'unpublished'".into()),
            };
        }
        if let Some(v) = data.get("leaving") {
            return match (v.as_str(), v.as_u64()) {
                (Some("ok"), _) => Ok(VideoRoomEvent::LeavingOk { reason: opt_str(data, "reason") }),
                (_, Some(id)) => Ok(VideoRoomEvent::Leaving { room: room()?, id }),
                _ => Err("invalid 'leaving'".into()),
            };
        }
        if data.get("kicked").is_some() {
            return Ok(VideoRoomEvent::Kicked { room: room()?, id: need_u64(data, "kicked")? });
        }
        if let Some(joining) = data.get("joining") {
            let who = Attendee::parse(joining).map_err(|e| format!("'joining': {e}"))?;
            return Ok(VideoRoomEvent::Joining { room: room()?, id: who.id, display: who.display });
        }
        if let Some(v) = data.get("moderation") {
            let muted = match v.as_str() {
                Some("muted") => true,
                Some("unmuted") => false,
                _ => return Err("invalid 'moderation'".into()),
            };
            let (room, id, mid) = (room()?, need_u64(data, "id")?, need_str(data, "mid")?);
            return Ok(VideoRoomEvent::Moderation { room, id, mid, muted });
        }
        if data.get("started").is_some() {
            return Ok(VideoRoomEvent::Started);
        }
        if data.get("left").is_some() {
            return Ok(VideoRoomEvent::Left);
        }
        if data.get("display").is_some() && data.get("id").is_some() {
            return Ok(VideoRoomEvent::DisplayChanged {
                id: need_u64(data, "id")?,
                display: need_str(data, "display")?,
            });
        }
        Err("unknown event".into())
    }

    /// Converts a handle event.
    pub fn from_handle_event(event: HandleEvent) -> VideoRoomEvent {
        match event {
            HandleEvent::Plugin { data, jsep } => VideoRoomEvent::parse(&data, jsep),
            HandleEvent::Janus(e) => VideoRoomEvent::Janus(e),
            HandleEvent::Other(v) => VideoRoomEvent::Unknown(format!(
                "Janus message '{}'",
                v.get("janus").and_then(Value::as_str).unwrap_or("?")
            )),
        }
    }

    /// A short name for logs (never the content).
    pub fn name(&self) -> &'static str {
        match self {
            VideoRoomEvent::Created { .. } => "created",
            VideoRoomEvent::Joined(_) => "joined",
            VideoRoomEvent::Publishers { .. } => "publishers",
            VideoRoomEvent::Configured { .. } => "configured",
            VideoRoomEvent::Unpublished { .. } => "unpublished",
            VideoRoomEvent::UnpublishedOk => "unpublished ok",
            VideoRoomEvent::Leaving { .. } => "leaving",
            VideoRoomEvent::LeavingOk { .. } => "leaving ok",
            VideoRoomEvent::Kicked { .. } => "kicked",
            VideoRoomEvent::Joining { .. } => "joining",
            VideoRoomEvent::Talking { .. } => "talking",
            VideoRoomEvent::StoppedTalking { .. } => "stopped-talking",
            VideoRoomEvent::Moderation { .. } => "moderation",
            VideoRoomEvent::DisplayChanged { .. } => "display changed",
            VideoRoomEvent::Destroyed { .. } => "destroyed",
            VideoRoomEvent::Attached { .. } => "attached",
            VideoRoomEvent::Updated { .. } => "updated",
            VideoRoomEvent::Updating { .. } => "updating",
            VideoRoomEvent::Started => "started",
            VideoRoomEvent::Left => "left",
            VideoRoomEvent::Success { .. } => "success",
            VideoRoomEvent::Participants { .. } => "participants",
            VideoRoomEvent::Error { .. } => "error",
            VideoRoomEvent::Janus(e) => e.name(),
            VideoRoomEvent::Unknown(_) => "unknown",
        }
    }
}

/// The typed event stream of a `VideoRoomHandle`. Ends when the handle is detached or the session ends.
pub type VideoRoomEvents = PluginEvents<VideoRoomEvent>;

impl FromHandleEvent for VideoRoomEvent {
    fn from_handle_event(event: HandleEvent) -> Self {
        VideoRoomEvent::from_handle_event(event)
    }
}

/// A handle on the VideoRoom plugin with typed requests. Each method waits for the plugin's answer (same
/// transaction) and checks its kind; room notifications, autoupdate offers and Janus's PeerConnection events
/// arrive on the `VideoRoomEvents` stream. A plugin error becomes `SignalingError::Plugin` (code 421-437), an
/// answer of the wrong kind `SignalingError::Protocol`.
#[derive(Clone, Debug)]
pub struct VideoRoomHandle {
    handle: PluginHandle,
}

fn unexpected(request: &str, event: &VideoRoomEvent) -> SignalingError {
    let what = match event {
        VideoRoomEvent::Unknown(what) => format!("unreadable answer ({what})"),
        other => format!("unexpected answer '{}'", other.name()),
    };
    SignalingError::Protocol { request: format!("message:{request}"), what }
}

fn check_id(what: &str, id: u64) -> Result<()> {
    if id == 0 || id > MAX_ID {
        return Err(SignalingError::Config(format!("{what} {id} is not in 1..=2^53-1")));
    }
    Ok(())
}

impl VideoRoomHandle {
    /// Attaches `janus.plugin.videoroom` on the session.
    pub async fn attach(session: &JanusSession) -> Result<(VideoRoomHandle, VideoRoomEvents)> {
        let (handle, rx) = session.attach(VIDEOROOM_PLUGIN).await?;
        Ok((VideoRoomHandle { handle }, VideoRoomEvents::new(rx)))
    }

    /// Wraps a handle already attached to `janus.plugin.videoroom`.
    pub fn from_handle(handle: PluginHandle) -> VideoRoomHandle {
        VideoRoomHandle { handle }
    }

    /// The generic handle (for trickle, `hangup` of the PeerConnection...).
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Sends any videoroom request and parses the answering event.
    pub async fn send(&self, body: Value, jsep: Option<Jsep>) -> Result<VideoRoomEvent> {
        let reply = self.handle.message(body, jsep).await?;
        Ok(VideoRoomEvent::parse(&reply.data, reply.jsep))
    }

    /// Creates the room; returns its id.
    pub async fn create_room(&self, request: &CreateRoom) -> Result<u64> {
        check_id("room id", request.room)?;
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Created { room } => Ok(room),
            other => Err(unexpected("create", &other)),
        }
    }

    /// Joins as a publisher (participant); returns the room state we joined.
    pub async fn join_publisher(&self, request: &JoinPublisher) -> Result<Joined> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Joined(joined) => Ok(joined),
            other => Err(unexpected("join", &other)),
        }
    }

    /// Publishes (or renegotiates) with our SDP offer; returns Janus's answer and our streams as accepted.
    pub async fn publish(&self, request: &Publish, offer: Jsep) -> Result<(Jsep, Vec<PublisherStream>)> {
        let name = if request.renegotiate { "configure" } else { "publish" };
        match self.send(request.to_body(), Some(offer)).await? {
            VideoRoomEvent::Configured { streams, jsep: Some(answer) } if !answer.is_offer() => Ok((answer, streams)),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Switches sending per stream (publisher: our mids; subscriber: subscriber mids).
    pub async fn configure_streams(&self, request: &ConfigureStreams) -> Result<()> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Configured { .. } => Ok(()),
            other => Err(unexpected("configure", &other)),
        }
    }

    /// Changes our publisher's display (the others get a `display` event).
    pub async fn configure_display(&self, request: &ConfigureDisplay) -> Result<()> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Configured { .. } => Ok(()),
            other => Err(unexpected("configure", &other)),
        }
    }

    /// Stops publishing (closes our PeerConnection; we stay in the room).
    pub async fn unpublish(&self) -> Result<()> {
        match self.send(Unpublish.to_body(), None).await? {
            VideoRoomEvent::UnpublishedOk => Ok(()),
            other => Err(unexpected("unpublish", &other)),
        }
    }

    /// Leaves the room (publisher handle) or the subscription (subscriber handle).
    pub async fn leave(&self) -> Result<()> {
        match self.send(Leave.to_body(), None).await? {
            VideoRoomEvent::LeavingOk { .. } | VideoRoomEvent::Left => Ok(()),
            other => Err(unexpected("leave", &other)),
        }
    }

    /// Joins as a subscriber; returns the m-lines and Janus's offer (answer it with `start`).
    pub async fn join_subscriber(&self, request: &JoinSubscriber) -> Result<(Vec<SubscriberStream>, Jsep)> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Attached { streams, jsep: Some(offer), .. } if offer.is_offer() => Ok((streams, offer)),
            other => Err(unexpected("join", &other)),
        }
    }

    /// Sends our SDP answer to a subscriber offer (`attached` or `updated`).
    pub async fn start(&self, answer: Jsep) -> Result<()> {
        match self.send(Start.to_body(), Some(answer)).await? {
            VideoRoomEvent::Started => Ok(()),
            other => Err(unexpected("start", &other)),
        }
    }

    /// Changes the subscriptions. An empty `Update` sends nothing and is `Unchanged`.
    pub async fn update(&self, request: &Update) -> Result<UpdateOutcome> {
        if request.subscribe.is_empty() && request.unsubscribe.is_empty() {
            return Ok(UpdateOutcome::Unchanged);
        }
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Updated { jsep: Some(jsep), streams, .. } if jsep.is_offer() => {
                Ok(UpdateOutcome::Offer { streams, jsep })
            }
            VideoRoomEvent::Updated { jsep: None, .. } => Ok(UpdateOutcome::Unchanged),
            VideoRoomEvent::Updating { .. } => Ok(UpdateOutcome::Postponed),
            other => Err(unexpected("update", &other)),
        }
    }

    /// Kicks a participant (the target gets `LeavingOk { reason: "kicked" }`, the others `Kicked`).
    pub async fn kick(&self, request: &Kick) -> Result<()> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Success { .. } => Ok(()),
            other => Err(unexpected("kick", &other)),
        }
    }

    /// Mutes or unmutes a publisher stream for everyone.
    pub async fn moderate(&self, request: &Moderate) -> Result<()> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Success { .. } => Ok(()),
            other => Err(unexpected("moderate", &other)),
        }
    }

    /// Destroys the room (participants get `Destroyed`; detach subscriber handles yourself).
    pub async fn destroy(&self, request: &Destroy) -> Result<()> {
        match self.send(request.to_body(), None).await? {
            VideoRoomEvent::Destroyed { .. } => Ok(()),
            other => Err(unexpected("destroy", &other)),
        }
    }

    /// Whether the room exists.
    pub async fn exists(&self, room: u64) -> Result<bool> {
        match self.send(Exists { room }.to_body(), None).await? {
            VideoRoomEvent::Success { exists: Some(exists), .. } => Ok(exists),
            other => Err(unexpected("exists", &other)),
        }
    }

    /// The room's participants (publisher-type handles, publishing or not).
    pub async fn list_participants(&self, room: u64) -> Result<Vec<Participant>> {
        match self.send(ListParticipants { room }.to_body(), None).await? {
            VideoRoomEvent::Participants { participants, .. } => Ok(participants),
            other => Err(unexpected("listparticipants", &other)),
        }
    }

    /// Detaches the handle (a publisher leaves the room: the others get `unpublished` and `leaving`).
    pub async fn detach(&self) -> Result<()> {
        self.handle.detach().await
    }
}

#[cfg(test)]
mod tests;
