//! Who is in a group call's room, as pure state: the members Janus's videoroom has told us about, their streams
//! and whether their display says muted, turned into the `GroupSignal`s the core takes. It reads the room's
//! membership events (publishers, joining, display changes, unpublished, leaving, kicked, talking) and, after a
//! reclaimed session, the room's participant list, whose difference with what was known stands in for the events
//! Janus sent while the WebSocket was down. At most `MAX_MEMBERS` members; our own feed is never one.

use crate::calling::core::MAX_MEMBERS;
use crate::calling::publisher_display;
use crate::calling::{GroupSignal, RoomMember, RoomStream, RoomStreamKind};
use crate::signaling::videoroom::{Participant, Publisher, StreamType, VideoRoomEvent};
use std::collections::HashMap;

/// Whether a member's display says its microphone is muted.
pub(super) fn display_muted(display: Option<&str>) -> bool {
    publisher_display::says_muted(display)
}

/// A member from its publisher display: a callbox user says who it is; anything else is a guest.
pub(super) fn member_of(feed: u64, display: Option<&str>) -> RoomMember {
    let (identifier, display_name) = publisher_display::member_identity(display);
    RoomMember { feed, identifier, display_name }
}

/// A publisher's streams as the core sees them.
fn streams_of(publisher: &Publisher) -> Vec<RoomStream> {
    publisher
        .streams
        .iter()
        .filter_map(|s| {
            let kind = match s.kind {
                StreamType::Audio => RoomStreamKind::Audio,
                StreamType::Video if s.is_screen_share() => RoomStreamKind::ScreenShare,
                StreamType::Video => RoomStreamKind::Video,
                StreamType::Data => return None,
            };
            Some(RoomStream { mid: s.mid.clone(), kind, active: !s.disabled && !s.moderated })
        })
        .collect()
}

#[derive(Debug, Default)]
struct Member {
    /// Its streams as the room last described them.
    streams: Vec<RoomStream>,
    /// Its display says its microphone is muted.
    muted: bool,
}

/// The members of one room, as seen from our feed.
#[derive(Debug)]
pub(super) struct Roster {
    own: u64,
    members: HashMap<u64, Member>,
}

impl Roster {
    /// The room as we joined it, with our feed `own`.
    pub(super) fn new(own: u64) -> Self {
        Roster { own, members: HashMap::new() }
    }

    /// A publisher in the room (at our join, or a `publishers` event): it is a member with these streams.
    pub(super) fn publisher_seen(&mut self, p: &Publisher) -> Vec<GroupSignal> {
        if p.id == self.own {
            return Vec::new();
        }
        if !self.members.contains_key(&p.id) && self.members.len() >= MAX_MEMBERS {
            log::warn!("room member {} ignored: already {MAX_MEMBERS} members", p.id);
            return Vec::new();
        }
        self.members.insert(p.id, Member { streams: streams_of(p), muted: display_muted(p.display.as_deref()) });
        let mut signals = vec![GroupSignal::MemberJoined(member_of(p.id, p.display.as_deref()))];
        signals.extend(self.streams_signal(p.id));
        signals
    }

    /// A membership event of the room; the others (ours, or about the room itself) give nothing.
    pub(super) fn on_event(&mut self, event: &VideoRoomEvent) -> Vec<GroupSignal> {
        match event {
            VideoRoomEvent::Publishers { publishers, .. } => {
                publishers.iter().flat_map(|p| self.publisher_seen(p)).collect()
            }
            VideoRoomEvent::DisplayChanged { id, display } if *id != self.own => {
                if let Some(member) = self.members.get_mut(id) {
                    member.muted = display_muted(Some(display));
                }
                self.streams_signal(*id).into_iter().collect()
            }
            VideoRoomEvent::Joining { id, display, .. } if *id != self.own => {
                vec![GroupSignal::MemberJoined(member_of(*id, display.as_deref()))]
            }
            VideoRoomEvent::Unpublished { id, .. } if *id != self.own => {
                if let Some(member) = self.members.get_mut(id) {
                    member.streams.clear();
                }
                vec![GroupSignal::MemberStreams { feed: *id, streams: Vec::new() }]
            }
            VideoRoomEvent::Leaving { id, .. } | VideoRoomEvent::Kicked { id, .. } if *id != self.own => {
                self.members.remove(id);
                let kicked = matches!(event, VideoRoomEvent::Kicked { .. });
                vec![GroupSignal::MemberLeft { feed: *id, kicked }]
            }
            VideoRoomEvent::Talking { id, .. } if *id != self.own => {
                vec![GroupSignal::MemberTalking { feed: *id, talking: true }]
            }
            VideoRoomEvent::StoppedTalking { id, .. } if *id != self.own => {
                vec![GroupSignal::MemberTalking { feed: *id, talking: false }]
            }
            _ => Vec::new(),
        }
    }

    /// The room's participant list after a reclaimed session: members that are no longer listed left, newcomers
    /// join (their streams come with their next `publishers` event), each member's mute and whether it still
    /// publishes are brought up to date.
    pub(super) fn resync(&mut self, listed: &[Participant]) -> Vec<GroupSignal> {
        let mut gone: Vec<u64> = self.members.keys().copied().filter(|f| !listed.iter().any(|p| p.id == *f)).collect();
        gone.sort_unstable();
        let mut signals = Vec::new();
        for feed in gone {
            self.members.remove(&feed);
            signals.push(GroupSignal::MemberLeft { feed, kicked: false });
        }
        for p in listed.iter().filter(|p| p.id != self.own) {
            let muted = display_muted(p.display.as_deref());
            if let Some(member) = self.members.get_mut(&p.id) {
                member.muted = muted;
                if !p.publisher {
                    member.streams.clear();
                }
                signals.extend(self.streams_signal(p.id));
            } else if self.members.len() < MAX_MEMBERS {
                self.members.insert(p.id, Member { streams: Vec::new(), muted });
                signals.push(GroupSignal::MemberJoined(member_of(p.id, p.display.as_deref())));
            }
        }
        signals
    }

    /// A member's streams for the core: a member whose display says muted has its audio inactive.
    fn streams_signal(&self, feed: u64) -> Option<GroupSignal> {
        let member = self.members.get(&feed)?;
        let streams = member
            .streams
            .iter()
            .cloned()
            .map(|mut s| {
                if s.kind == RoomStreamKind::Audio && member.muted {
                    s.active = false;
                }
                s
            })
            .collect();
        Some(GroupSignal::MemberStreams { feed, streams })
    }
}

#[cfg(test)]
mod tests;
