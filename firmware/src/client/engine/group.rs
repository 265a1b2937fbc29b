//! The engine's side of group calls: a call held in a Janus videoroom room. For each group call it owns a
//! publisher handle with its send-and-receive media session (our microphone and camera out; the room's voices
//! mixed into our speaker), and a subscriber handle with a receive-only media session carrying the members'
//! streams the core chose. It carries out the core's group commands (`CreateRoom`, `Invite`, `Subscribe`,
//! `Kick`, ...), turns the room's events into `GroupSignal`s, and sends and takes in the invitation messages
//! (SIP MESSAGE through the account's handle, `crate::calling::invitation`).

mod roster;

use super::invite_flights::{Fate, Outcome};
use super::orphans::Cancel;
use super::Engine;
use crate::calling::core::MAX_MEMBERS;
use crate::calling::invitation::{self, GroupCallId, GroupMessage, Invitation, CONTENT_TYPE};
use crate::calling::publisher_display::PublisherDisplay;
use crate::calling::{subcode, CallEndReason, CallId, GroupSignal, Identifier, ParticipantId, Secret, SignalEvent};
use crate::client::shared::{GroupView, GuestAccess, Shared};
use crate::media::MediaSession;
use crate::signaling::videoroom::{
    room_id_from, ConfigureDisplay, CreateRoom, Destroy, JoinPublisher, JoinSubscriber, Kick, Publish, SubscribeStream,
    SubscriberStream, UnsubscribeStream, Update, UpdateOutcome, VideoRoomEvent, VideoRoomEvents, VideoRoomHandle,
    CAMERA_DESCRIPTION,
};
use crate::signaling::{JanusEvent, Jsep, SignalingError};
use roster::{member_of, Roster};
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Room events waiting for the engine.
pub(super) const ROOM_EVENT_QUEUE: usize = 256;
/// Length of the generated room secret and PIN.
const SECRET_LEN: usize = 24;

/// Which handle of a group call an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Publisher,
    Subscriber,
}

/// An event of a group call's handle, tagged with the leg it belongs to.
pub(super) struct RoomEvent {
    pub call: CallId,
    pub serial: u64,
    pub side: Side,
    /// `None`: the handle's event stream ended.
    pub event: Option<VideoRoomEvent>,
}

/// A call's presence in its room.
pub(super) struct GroupLeg {
    serial: u64,
    room: u64,
    pin: Secret,
    /// Only the owner holds it (kick, destroy).
    secret: Option<Secret>,
    call_id: GroupCallId,
    publisher: VideoRoomHandle,
    media: MediaSession,
    private_id: u32,
    subscription: Option<Subscription>,
    /// Who is in the room.
    roster: Roster,
    tasks: Vec<JoinHandle<()>>,
}

struct Subscription {
    /// Tells this subscription's events from those of an earlier one that failed.
    serial: u64,
    handle: VideoRoomHandle,
    media: MediaSession,
}

/// A random string of letters and digits (room secrets and PINs).
fn random_secret() -> Secret {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let s: String = (0..SECRET_LEN).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
    Secret::new(s)
}

/// Our publisher display (`calling::publisher_display`): who we are, and whether our microphone is muted.
fn display_of(user: &Identifier, name: Option<&str>, muted: bool) -> String {
    PublisherDisplay { user: user.clone(), name: name.map(str::to_owned), muted }.encode()
}

/// The reason a group call ends with when this device's token has no room grant: Janus would refuse its `create`.
fn no_room_grant() -> CallEndReason {
    CallEndReason::new(
        403,
        subcode::NO_ROOM_GRANT,
        "this device may not start group calls: its token has no room grant (grants.janus.room_admin_key)",
    )
}

/// The reason a group call ends with when its room cannot be set up or joined.
fn setup_failure(what: &str, e: &SignalingError) -> CallEndReason {
    let code = match e {
        // 426: no such room (the call is over), 433: wrong PIN (or, creating, a wrong admin key).
        SignalingError::Plugin { code: 426, .. } => 404,
        SignalingError::Plugin { code: 433, .. } => 403,
        _ => 500,
    };
    CallEndReason::new(code, subcode::SETUP_FAILED, format!("{what} failed: {e}"))
}

fn forward(
    mut events: VideoRoomEvents,
    tx: mpsc::Sender<RoomEvent>,
    call: CallId,
    serial: u64,
    side: Side,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if tx.send(RoomEvent { call, serial, side, event: Some(event) }).await.is_err() {
                return;
            }
        }
        let _ = tx.send(RoomEvent { call, serial, side, event: None }).await;
    })
}

impl Shared {
    fn set_group_view(&self, call: CallId, f: impl FnOnce(&mut GroupView)) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        f(groups.entry(call).or_default());
    }
}

impl Engine {
    pub(super) fn group_failed(&self, call: CallId, reason: CallEndReason) {
        self.shared.engine_core(|core, now| core.on_group(call, GroupSignal::Failed(reason), now));
    }

    fn group(&self, call: CallId, signal: GroupSignal) {
        self.shared.engine_core(|core, now| core.on_group(call, signal, now));
    }

    fn is_group(&self, call: CallId) -> bool {
        self.shared.peek(|core| core.is_group_call(call))
    }

    /// Carries out a group command; `false` when `cmd` is not one (or not about a group call).
    pub(super) async fn execute_group(&mut self, cmd: &crate::calling::Command) -> bool {
        use crate::calling::Command;
        match cmd {
            Command::CreateRoom { call } => {
                if let Err(reason) = self.join_room(*call, true).await {
                    self.group_failed(*call, reason);
                }
            }
            Command::Answer { call } if self.is_group(*call) => {
                if let Err(reason) = self.join_room(*call, false).await {
                    self.group_failed(*call, reason);
                }
            }
            Command::Decline { call, code } if self.is_group(*call) => self.decline_invitation(*call, *code).await,
            Command::HangUp { call } if self.is_group(*call) => {
                self.leave_room(*call).await;
                self.signal(*call, SignalEvent::Hangup { code: 200, reason: "left the room".into() });
            }
            Command::ReleaseMedia { call } if self.groups.contains_key(call) => {
                self.leave_room(*call).await;
                // A call escalated from 1:1 may still hold its SIP leg.
                self.release(*call).await;
            }
            Command::Invite { call, participant, target } => self.invite(*call, *participant, target).await,
            Command::CancelInvitation { call, target } => {
                if let Some(leg) = self.groups.get(call) {
                    let message = GroupMessage::Cancel { call_id: leg.call_id.clone() };
                    self.send_group_message(&message, target, None).await;
                } else if self.orphans.cancel_later(*call, target) == Cancel::Full {
                    // The session is being rebuilt: the others are sent once connected again.
                    log::warn!("{call}: too many invitations to withdraw: {target} rings until its ring time ends");
                }
            }
            Command::Subscribe { call, feed, mids } => {
                if let Err(e) = self.subscribe(*call, *feed, mids).await {
                    log::warn!("{call}: subscribing to member {feed} failed: {e}");
                }
            }
            Command::Unsubscribe { call, feed, mids } => {
                let update = Update {
                    subscribe: vec![],
                    unsubscribe: mids
                        .iter()
                        .map(|m| UnsubscribeStream { feed: Some(*feed), mid: Some(m.clone()), sub_mid: None })
                        .collect(),
                };
                // A member that left is already gone from the subscription (Janus updates it by itself).
                if let Err(e) = self.update_subscription(*call, &update).await {
                    log::debug!("{call}: unsubscribing from member {feed}: {e}");
                }
            }
            Command::Kick { call, feed } => {
                let Some(leg) = self.groups.get(call) else { return true };
                let Some(secret) = leg.secret.clone() else {
                    log::warn!("{call}: only the room's owner can remove a member");
                    return true;
                };
                let kick = Kick { room: leg.room, secret, id: *feed };
                match leg.publisher.kick(&kick).await {
                    Ok(()) => log::info!("{call}: member {feed} removed from the room"),
                    Err(e) => log::warn!("{call}: removing member {feed} failed: {e}"),
                }
            }
            // The room's media, and then (`false`) the 1:1 leg's an escalated call may still have.
            Command::SetMicrophoneMuted { call, muted } if self.groups.contains_key(call) => {
                self.set_group_muted(*call, *muted).await;
                return false;
            }
            Command::SetVideoEnabled { call, enabled } if self.groups.contains_key(call) => {
                if let Some(leg) = self.groups.get(call) {
                    leg.media.set_video_enabled(*enabled);
                }
                return false;
            }
            // The room tells the others (its events), not a SIP INFO.
            Command::SendState { call, .. } if self.is_group(*call) => {}
            _ => return false,
        }
        true
    }

    /// Creates the room (owner) or takes the invitation's (invitee), joins it as a publisher and publishes our
    /// microphone and camera; then tells the core who is already there.
    async fn join_room(&mut self, call: CallId, create: bool) -> Result<(), CallEndReason> {
        if self.groups.contains_key(&call) {
            log::debug!("{call}: already in its room");
            return Ok(());
        }
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            CallEndReason::new(500, subcode::SETUP_FAILED, format!("{what} failed: {e}"))
        };
        // Creating a room needs the room grant; without it the call ends here, before anything reaches Janus.
        let admin_key = if create {
            let Some(key) = self.token.janus().ok().and_then(|g| g.room_admin_key.clone()) else {
                log::warn!("{call}: cannot start a group call: this device's token has no room grant");
                return Err(no_room_grant());
            };
            key
        } else {
            Secret::default()
        };
        let session = self.conn.as_ref().map(|c| c.session.clone()).ok_or_else(|| fail("joining", &"not connected"))?;
        let (room, pin, secret, call_id) = if create {
            let room = room_id_from(rand::random());
            let call_id = GroupCallId::new(format!("cbx-{room}")).map_err(|e| fail("the call id", &e))?;
            (room, random_secret(), Some(random_secret()), call_id)
        } else {
            let invitation = self
                .shared
                .peek(|core| core.invitation(call).cloned())
                .ok_or_else(|| fail("joining", &"no invitation"))?;
            (invitation.room, invitation.pin, None, invitation.call_id)
        };
        let (publisher, events) = VideoRoomHandle::attach(&session).await.map_err(|e| setup_failure("attach", &e))?;
        self.next_serial += 1;
        let serial = self.next_serial;
        let mut tasks = vec![forward(events, self.room_tx.clone(), call, serial, Side::Publisher)];
        let result = async {
            if let Some(secret) = &secret {
                let video_codecs = match self.config().media.video.as_ref().and_then(|v| v.codecs.first()) {
                    Some(crate::media::VideoCodec::H264) => "h264,vp8",
                    _ => "vp8,h264",
                };
                let request = CreateRoom {
                    room,
                    description: format!("callbox group call {call_id}"),
                    secret: secret.clone(),
                    pin: pin.clone(),
                    admin_key: admin_key.clone(),
                    // Every member the core keeps (invitees, other devices, guests), and us.
                    publishers: MAX_MEMBERS as u32 + 1,
                    audio_codecs: "opus".into(),
                    video_codecs: video_codecs.into(),
                    audiolevel_event: true,
                    // Talking after 1 s above the threshold, as janus.js demos use.
                    audio_active_packets: 50,
                    audio_level_average: 40,
                    notify_joining: true,
                    require_pvtid: false,
                };
                publisher.create_room(&request).await.map_err(|e| setup_failure("creating the room", &e))?;
                log::info!("{call}: room {room} created");
            }
            let (muted, video_on) =
                self.shared.peek(|core| core.call(call).map(|c| (c.is_muted, c.is_video_on))).unwrap_or((false, true));
            let display = display_of(&self.shared.local_user, self.config().display_name.as_deref(), muted);
            let joined = publisher
                .join_publisher(&JoinPublisher { room, pin: pin.clone(), display, id: None })
                .await
                .map_err(|e| setup_failure("joining the room", &e))?;
            let media = MediaSession::new(self.config().media.clone()).await.map_err(|e| fail("media", &e))?;
            // What the user chose before the room (while ringing, or in the 1:1 call being moved) holds in it.
            media.set_audio_muted(muted);
            media.set_video_enabled(video_on);
            let publish = async {
                let offer = media.create_offer().await.map_err(|e| fail("the offer", &e))?;
                let descriptions = crate::media::sdp::mid_of(&offer, "video")
                    .map(|mid| vec![(mid, CAMERA_DESCRIPTION.to_owned())])
                    .unwrap_or_default();
                let request = Publish { descriptions, ..Publish::default() };
                let (answer, _) = publisher
                    .publish(&request, Jsep::offer(offer))
                    .await
                    .map_err(|e| setup_failure("publishing", &e))?;
                media.accept_answer(&answer.sdp).await.map_err(|e| fail("the room's answer", &e))?;
                Ok::<_, CallEndReason>(())
            };
            if let Err(e) = publish.await {
                media.close().await;
                return Err(e);
            }
            Ok((joined, media))
        }
        .await;
        let (joined, media) = match result {
            Ok(ok) => ok,
            Err(reason) => {
                for t in tasks {
                    t.abort();
                }
                if let Some(secret) = secret {
                    // Created but not joined: nobody else knows it yet; close it rather than leave it behind.
                    if let Err(e) = publisher.destroy(&Destroy { room, secret }).await {
                        log::warn!("{call}: closing room {room} after the failed join: {e}");
                    }
                }
                let _ = publisher.detach().await;
                return Err(reason);
            }
        };
        tasks.push(super::forward_media_events(call, &media, self.media_tx.clone()));
        // An escalated call's 1:1 leg keeps its place until it is dropped (`drop_sip_leg` then puts this one there).
        self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).entry(call).or_insert_with(|| media.clone());
        let access = GuestAccess { room, pin: pin.clone() };
        self.shared.set_group_view(call, |v| v.access = Some(access));
        log::info!("{call}: in room {room} as member {} ({} others there)", joined.id, joined.publishers.len());
        self.groups.insert(
            call,
            GroupLeg {
                serial,
                room,
                pin,
                secret,
                call_id,
                publisher,
                media,
                private_id: joined.private_id,
                subscription: None,
                roster: Roster::new(joined.id),
                tasks,
            },
        );
        self.group(call, GroupSignal::Joined);
        for attendee in joined.attendees {
            self.group(call, GroupSignal::MemberJoined(member_of(attendee.id, attendee.display.as_deref())));
        }
        for p in joined.publishers {
            self.publisher_seen(call, &p);
        }
        Ok(())
    }

    fn publisher_seen(&mut self, call: CallId, p: &crate::signaling::videoroom::Publisher) {
        let Some(leg) = self.groups.get_mut(&call) else { return };
        for signal in leg.roster.publisher_seen(p) {
            self.group(call, signal);
        }
    }

    /// Our microphone: silence goes out, and the others learn it from our display.
    async fn set_group_muted(&mut self, call: CallId, muted: bool) {
        let Some(leg) = self.groups.get(&call) else { return };
        leg.media.set_audio_muted(muted);
        let display = display_of(&self.shared.local_user, self.config().display_name.as_deref(), muted);
        if let Err(e) = leg.publisher.configure_display(&ConfigureDisplay { display }).await {
            log::warn!("{call}: telling the room about our microphone failed: {e}");
        }
    }

    /// Leaves the room (the owner closes it for everyone) and closes the call's media. Idempotent. With the session
    /// found lost, nothing is asked of Janus: an owned room is kept as an orphan, closed once connected again.
    async fn leave_room(&mut self, call: CallId) {
        let Some(leg) = self.groups.remove(&call) else { return };
        self.invites_in_flight.forget_call(call);
        if self.lost.is_some() {
            self.adopt_orphan(call, &leg);
        } else {
            if let Some(secret) = leg.secret.clone() {
                match leg.publisher.destroy(&Destroy { room: leg.room, secret }).await {
                    Ok(()) => log::info!("{call}: room {} closed", leg.room),
                    Err(e) => log::warn!("{call}: closing room {} failed: {e}", leg.room),
                }
            } else if let Err(e) = leg.publisher.leave().await {
                log::debug!("{call}: leaving the room: {e}");
            }
            if let Some(sub) = &leg.subscription {
                let _ = sub.handle.detach().await;
            }
            let _ = leg.publisher.detach().await;
        }
        if let Some(stats) = self.shared.media_stats(call) {
            self.shared.keep_final_stats(call, stats);
        }
        self.shared.media.lock().unwrap_or_else(|p| p.into_inner()).remove(&call);
        self.shared.groups.lock().unwrap_or_else(|p| p.into_inner()).remove(&call);
        leg.close_media(call).await;
    }

    /// Keeps what closing an owned room needs, for when the session is back.
    fn adopt_orphan(&mut self, call: CallId, leg: &GroupLeg) {
        let Some(secret) = leg.secret.clone() else { return };
        if !self.orphans.adopt(call, leg.room, secret, leg.call_id.clone()) {
            log::warn!(
                "room {} of {call} is left to Janus: already {} rooms to close",
                leg.room,
                super::orphans::MAX_ORPHANS
            );
        }
    }

    /// The session is lost: every room leg's media closed, nothing asked of Janus; owned rooms become orphans.
    pub(super) async fn drop_rooms_with_session(&mut self) {
        let calls: Vec<CallId> = self.groups.keys().copied().collect();
        for call in calls {
            log::info!("{call}: left its room with the session");
            self.leave_room(call).await;
        }
        self.invites_in_flight.clear();
    }

    /// Once connected again: closes the rooms the lost session left and withdraws their invitations.
    pub(super) async fn close_orphans(&mut self) {
        let orphans = self.orphans.take();
        if orphans.is_empty() {
            return;
        }
        let Some(session) = self.conn.as_ref().map(|c| c.session.clone()) else { return };
        for orphan in orphans {
            for target in &orphan.cancels {
                let message = GroupMessage::Cancel { call_id: orphan.call_id.clone() };
                self.send_group_message(&message, target, None).await;
            }
            match VideoRoomHandle::attach(&session).await {
                Ok((handle, _events)) => {
                    match handle.destroy(&Destroy { room: orphan.room, secret: orphan.secret }).await {
                        Ok(()) => log::info!("{}: room {} closed after the reconnection", orphan.call, orphan.room),
                        // 426: Janus lost it too (restarted).
                        Err(e) => log::info!("{}: room {} not closed: {e}", orphan.call, orphan.room),
                    }
                    let _ = handle.detach().await;
                }
                Err(e) => log::warn!("{}: room {} left open: {e}", orphan.call, orphan.room),
            }
        }
    }

    async fn invite(&mut self, call: CallId, participant: ParticipantId, target: &Identifier) {
        let Some(leg) = self.groups.get(&call) else { return };
        let escalate = self.shared.peek(|core| core.invite_escalates(call, participant));
        let invitation = Invitation {
            call_id: leg.call_id.clone(),
            room: leg.room,
            pin: leg.pin.clone(),
            server: self.conn.as_ref().map(|c| c.session.url().to_string()).unwrap_or_default(),
            caller: self.shared.local_user.clone(),
            caller_display_name: self.config().display_name.clone(),
            video: self.config().media.video.is_some(),
            ring_secs: u32::try_from(self.config().core.ring_timeout.as_secs()).unwrap_or(60),
            escalate,
        };
        let sip_call_id = format!("cbxinv-{:016x}", rand::random::<u64>());
        if !self.send_group_message(&GroupMessage::Invite(invitation), target, Some(&sip_call_id)).await {
            self.group(call, GroupSignal::InvitationFailed { participant, code: 500 });
            return;
        }
        log::info!("{call}: {target} invited");
        if let Some(given_up) = self.invites_in_flight.sent(sip_call_id, call, participant) {
            log::warn!("{}: an invitation's delivery was never reported: given up", given_up.call);
            self.invitation_outcome(given_up);
        }
    }

    /// Sends a message of the invitation protocol to `target` through the account's handle.
    async fn send_group_message(&self, message: &GroupMessage, target: &Identifier, sip_call_id: Option<&str>) -> bool {
        let body = match invitation::encode(message) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("group message to {target} not sent: {e}");
                return false;
            }
        };
        let (Some(conn), Ok(grant)) = (self.conn.as_ref(), self.token.sip()) else { return false };
        let uri = target.sip_uri(&grant.realm);
        match conn.slots[0].sip.message_with_call_id(Some(CONTENT_TYPE), &body, Some(&uri), sip_call_id).await {
            Ok(_) => true,
            Err(e) => {
                log::warn!("group message to {target} not sent: {e}");
                false
            }
        }
    }

    async fn decline_invitation(&mut self, call: CallId, code: u16) {
        let Some(invitation) = self.shared.peek(|core| core.invitation(call).cloned()) else { return };
        let message = GroupMessage::Decline { call_id: invitation.call_id.clone(), code };
        self.send_group_message(&message, &invitation.caller, None).await;
    }

    /// After the session was reclaimed on a new socket: the room events Janus sent meanwhile went nowhere, so each
    /// room is asked who is in it now (`listparticipants`): members that left are gone, newcomers join, each
    /// member's display (mute) and whether it still publishes are brought up to date. (A newcomer's streams come
    /// with its next `publishers` event.)
    pub(super) async fn resync_rooms(&mut self) {
        let calls: Vec<CallId> = self.groups.keys().copied().collect();
        for call in calls {
            let Some(leg) = self.groups.get(&call) else { continue };
            let (publisher, room) = (leg.publisher.clone(), leg.room);
            let listed = match publisher.list_participants(room).await {
                Ok(listed) => listed,
                Err(e) => {
                    log::warn!("{call}: the room's participants after the reconnection: {e}");
                    continue;
                }
            };
            let Some(leg) = self.groups.get_mut(&call) else { continue };
            for signal in leg.roster.resync(&listed) {
                self.group(call, signal);
            }
            log::info!("{call}: room {room} resynchronised after the reconnection ({} there)", listed.len());
        }
    }

    /// A room handle or its PeerConnection is gone while the call is in the room: the call cannot go on (our voice
    /// or the others' would be lost without anyone seeing it), so it ends with a reason. (Our own leaving, a
    /// removal and the room's end come first and end the call before these.)
    pub(super) fn room_media_lost(&self, call: CallId, side: Option<Side>, why: &str) {
        let what = match side {
            Some(Side::Publisher) => "what we send to the room",
            Some(Side::Subscriber) => "what we receive from the room",
            None => "the room's media",
        };
        log::warn!("{call}: {what} is lost: {why}");
        self.group_failed(call, CallEndReason::new(500, subcode::MEDIA_FAILED, format!("{what} is lost: {why}")));
    }

    /// A SIP MESSAGE: an invitation-protocol message is taken in; anything else is logged and skipped.
    pub(super) fn on_message(&mut self, sender: &str, content_type: Option<&str>, content: &str) {
        if !content_type.is_some_and(|t| t.eq_ignore_ascii_case(CONTENT_TYPE)) {
            log::info!("a SIP MESSAGE of another kind skipped");
            return;
        }
        let from = match Identifier::from_sip_uri(sender) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("group message from an unusable identity skipped: {e}");
                return;
            }
        };
        // (No domain check here: Janus reports a MESSAGE's sender with its contact's host and port, not its
        // domain; Kamailio's From check is what binds it to the authenticated user.)
        let message = match invitation::decode(content) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("group message from {from} skipped: {e}");
                return;
            }
        };
        match message {
            GroupMessage::Invite(invitation) => {
                // Phone numbers come through the trunk, whose caller ids nobody authenticated.
                if from.is_phone() {
                    log::warn!("invitation from the phone number {from} refused: rooms are for users of the service");
                    return;
                }
                if invitation.caller != from {
                    log::warn!("invitation from {from} in the name of {} refused", invitation.caller);
                    return;
                }
                log::info!("invited by {from} into a group call ({})", invitation.call_id);
                // The core takes a repeated delivery as the call it already has.
                self.shared.engine_core(|core, now| core.incoming_invitation(invitation, now));
            }
            GroupMessage::Cancel { call_id } => {
                let call = self.shared.peek(|core| {
                    core.invited_call(&call_id).filter(|c| core.invitation(*c).is_some_and(|i| i.caller == from))
                });
                match call {
                    Some(call) => self.group(call, GroupSignal::InvitationCancelled),
                    None => log::debug!("cancel of an unknown invitation {call_id} skipped"),
                }
            }
            GroupMessage::Decline { call_id, code } => {
                let call = self.groups.iter().find(|(_, leg)| leg.call_id == call_id).map(|(c, _)| *c);
                match call {
                    Some(call) => {
                        log::info!("{call}: {from} declined ({code})");
                        self.group(call, GroupSignal::Declined { from, code });
                    }
                    None => log::debug!("decline of an unknown invitation {call_id} skipped"),
                }
            }
        }
    }

    /// The fate of an invitation message (`messagedelivery`): delivered to a device, or not.
    pub(super) fn on_message_delivery(&mut self, code: i64, sip_call_id: Option<&str>) {
        if let Some(outcome) = self.invites_in_flight.reported(sip_call_id, code) {
            if let Fate::Failed(code) = outcome.fate {
                log::info!("{}: invitation not delivered ({code})", outcome.call);
            }
            self.invitation_outcome(outcome);
        }
    }

    fn invitation_outcome(&mut self, Outcome { call, participant, fate }: Outcome) {
        match fate {
            Fate::Delivered => self.group(call, GroupSignal::InvitationDelivered { participant }),
            Fate::Failed(code) => self.group(call, GroupSignal::InvitationFailed { participant, code }),
        }
    }

    async fn subscribe(&mut self, call: CallId, feed: u64, mids: &[String]) -> Result<(), String> {
        let streams: Vec<SubscribeStream> =
            mids.iter().map(|m| SubscribeStream { feed, mid: Some(m.clone()) }).collect();
        let Some(leg) = self.groups.get(&call) else { return Err("not in the room".into()) };
        if leg.subscription.is_some() {
            return self.update_subscription(call, &Update { subscribe: streams, unsubscribe: vec![] }).await;
        }
        let session = self.conn.as_ref().map(|c| c.session.clone()).ok_or("not connected")?;
        let media =
            MediaSession::new_receiver(self.config().media.clone(), &leg.media).await.map_err(|e| e.to_string())?;
        let (handle, events) = match VideoRoomHandle::attach(&session).await {
            Ok(h) => h,
            Err(e) => {
                media.close().await;
                return Err(e.to_string());
            }
        };
        let request =
            JoinSubscriber { room: leg.room, pin: leg.pin.clone(), private_id: Some(leg.private_id), streams };
        self.next_serial += 1;
        let serial = self.next_serial;
        let forwarder = forward(events, self.room_tx.clone(), call, serial, Side::Subscriber);
        let joined = async {
            let (streams, offer) = handle.join_subscriber(&request).await.map_err(|e| e.to_string())?;
            let answer = media.accept_offer(&offer.sdp).await.map_err(|e| e.to_string())?;
            handle.start(Jsep::answer(answer)).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(streams)
        }
        .await;
        match joined {
            Ok(streams) => {
                let media_fwd = super::forward_media_events(call, &media, self.media_tx.clone());
                self.shared.set_group_view(call, |v| {
                    v.subscriber = Some(media.clone());
                    v.set_streams(&streams, &media);
                });
                if let Some(leg) = self.groups.get_mut(&call) {
                    leg.tasks.push(forwarder);
                    leg.tasks.push(media_fwd);
                    leg.subscription = Some(Subscription { serial, handle, media });
                }
                log::info!("{call}: receiving {} streams of the room", streams.len());
                Ok(())
            }
            Err(e) => {
                forwarder.abort();
                let _ = handle.detach().await;
                media.close().await;
                Err(e)
            }
        }
    }

    async fn update_subscription(&mut self, call: CallId, update: &Update) -> Result<(), String> {
        let Some(handle) = self.groups.get(&call).and_then(|l| l.subscription.as_ref()).map(|s| s.handle.clone())
        else {
            return Ok(());
        };
        match handle.update(update).await.map_err(|e| e.to_string())? {
            UpdateOutcome::Offer { streams, jsep } => self.answer_subscription_offer(call, streams, jsep).await,
            // The changes come later as an `updated` event with the offer.
            UpdateOutcome::Postponed | UpdateOutcome::Unchanged => Ok(()),
        }
    }

    async fn answer_subscription_offer(
        &mut self,
        call: CallId,
        streams: Vec<SubscriberStream>,
        offer: Jsep,
    ) -> Result<(), String> {
        let Some(sub) = self.groups.get(&call).and_then(|l| l.subscription.as_ref()) else { return Ok(()) };
        let (handle, media) = (sub.handle.clone(), sub.media.clone());
        let answer = media.accept_offer(&offer.sdp).await.map_err(|e| e.to_string())?;
        handle.start(Jsep::answer(answer)).await.map_err(|e| e.to_string())?;
        self.shared.set_group_view(call, |v| v.set_streams(&streams, &media));
        log::debug!("{call}: subscription renegotiated ({} streams)", streams.len());
        Ok(())
    }

    /// An event of a group call's handle.
    pub(super) async fn on_room(&mut self, ev: RoomEvent) {
        let RoomEvent { call, serial, side, event } = ev;
        let Some(leg) = self.groups.get(&call) else { return };
        let current = match side {
            Side::Publisher => leg.serial == serial,
            Side::Subscriber => leg.subscription.as_ref().is_some_and(|s| s.serial == serial),
        };
        if !current {
            return;
        }
        let Some(event) = event else {
            // A lost session ends every handle's events: that is the signaling lost, not the room's media.
            if let Some(reason) = self.conn.as_ref().and_then(|c| c.session.lost_reason()) {
                self.lost.get_or_insert(reason);
                return;
            }
            self.room_media_lost(call, Some(side), "its handle's events ended");
            return;
        };
        match event {
            VideoRoomEvent::LeavingOk { reason: Some(reason) } if reason == "kicked" => {
                log::info!("{call}: removed from the room by its owner");
                self.group(call, GroupSignal::Removed);
            }
            VideoRoomEvent::Destroyed { .. } => {
                log::info!("{call}: the room was closed by its owner");
                self.group(call, GroupSignal::RoomClosed);
            }
            VideoRoomEvent::Updated { streams, jsep: Some(offer), .. } if side == Side::Subscriber => {
                if let Err(e) = self.answer_subscription_offer(call, streams, offer).await {
                    log::warn!("{call}: the room's new subscription offer failed: {e}");
                }
            }
            VideoRoomEvent::Janus(JanusEvent::Detached) => {
                self.room_media_lost(call, Some(side), "its handle was detached")
            }
            VideoRoomEvent::Janus(JanusEvent::Hangup { reason }) => {
                self.room_media_lost(call, Some(side), &format!("Janus closed its PeerConnection ({reason})"))
            }
            VideoRoomEvent::Error { code, message } => log::warn!("{call}: room error {code}: {message}"),
            VideoRoomEvent::Unknown(what) => log::debug!("{call}: room event skipped: {what}"),
            membership => {
                let Some(leg) = self.groups.get_mut(&call) else { return };
                let signals = leg.roster.on_event(&membership);
                if signals.is_empty() {
                    log::debug!("{call}: room event {membership:?}");
                }
                for signal in signals {
                    self.group(call, signal);
                }
            }
        }
    }
}

impl GroupLeg {
    /// The room's publisher session (our microphone and camera; the room's voices on our speaker).
    pub(super) fn media(&self) -> MediaSession {
        self.media.clone()
    }

    /// Stops the leg's tasks and closes its media sessions (after its handles were dealt with).
    async fn close_media(self, call: CallId) {
        for t in &self.tasks {
            t.abort();
        }
        let s = self.media.stats();
        let mut received = Vec::new();
        if let Some(sub) = self.subscription {
            received = sub.media.remote_streams();
            sub.media.close().await;
        }
        self.media.close().await;
        let frames: u64 = received.iter().map(|r| r.frames_decoded).sum();
        log::info!(
            "{call}: room media closed: audio {} / video {} frames sent; {} streams received, {frames} frames decoded",
            s.audio_packets_sent,
            s.video_frames_sent,
            received.len()
        );
    }
}

impl GroupView {
    /// Records which subscription mid carries which member stream. A mid Janus gave to another member's stream
    /// forgets what it received so far (no old picture in the new member's tile; a keyframe is asked for).
    fn set_streams(&mut self, streams: &[SubscriberStream], media: &MediaSession) {
        let mids: HashMap<(u64, String), String> = streams
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| Some(((s.feed_id?, s.feed_mid.clone()?), s.mid.clone())))
            .collect();
        for (source, mid) in &self.mids {
            if mids.get(source) != Some(mid) {
                media.forget_remote_mid(mid);
            }
        }
        self.mids = mids;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_display_names_us() {
        let me = Identifier::user("door-1").unwrap();
        let m = member_of(1, Some(&display_of(&me, Some("Door"), false)));
        assert_eq!(m.identifier, Some(me.clone()));
        assert_eq!(m.display_name.as_deref(), Some("Door"));
        assert!(!roster::display_muted(Some(&display_of(&me, Some("Door"), false))));
        assert!(roster::display_muted(Some(&display_of(&me, Some("Door"), true))));
    }
}
