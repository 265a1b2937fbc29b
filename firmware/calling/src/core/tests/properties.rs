//! Properties of the calling core over any sequence of inputs, driven by `callbox-fuzz`: each input is a script
//! (calls placed to one or many targets, incoming calls, answers, rejects, hang-ups, every signal the engine can
//! report, media signals, group signals from a churning room, renderers added and removed, lost sessions, time
//! passing), played into [`CallingCore`] with the outputs drained after every step. After every step:
//! - a call that reported `Disconnected` never reports another state, and has an end reason;
//! - every map stays within its bound: ended calls kept (`ended_calls_kept`), the members and invitees of a group
//!   call (`MAX_MEMBERS`, `MAX_INVITEES`), no participant without its call, no renderer without its stream;
//! - one step makes a bounded number of commands and events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use callbox_fuzz::fuzz;

use crate::core::*;
use crate::model::ScalingMode;

fn user(name: &str) -> Identifier {
    Identifier::user(name).unwrap()
}

fn target(n: u8) -> Identifier {
    match n % 4 {
        0 => user("monitor"),
        1 => user("concierge"),
        2 => Identifier::phone("+4930123456", None).unwrap(),
        _ => user(&format!("resident-{}", n % 40)),
    }
}

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    /// A yes or no.
    fn flag(&mut self) -> bool {
        self.byte() & 1 == 0
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

fn signal(s: &mut Script<'_>) -> SignalEvent {
    match s.byte() % 9 {
        0 => SignalEvent::Ringing,
        1 => SignalEvent::EarlyMedia,
        2 => SignalEvent::Accepted,
        3 => SignalEvent::LocalHold(s.flag()),
        4 => SignalEvent::RemoteHold(s.flag()),
        5 => SignalEvent::Dtmf(b"0123456789*#AZ"[usize::from(s.byte()) % 14] as char),
        6 => SignalEvent::PeerState { muted: Some(s.flag()), video_on: None },
        7 => SignalEvent::Hangup { code: [200, 486, 603, 500, 0, 699][usize::from(s.byte()) % 6], reason: "x".into() },
        _ => SignalEvent::Failed(CallEndReason::new(500, 0, "failed")),
    }
}

fn group_signal(s: &mut Script<'_>, participants: &[ParticipantId]) -> GroupSignal {
    let feed = u64::from(s.byte() % 64);
    let some_participant = participants.get(usize::from(s.byte()) % participants.len().max(1)).copied();
    match s.byte() % 10 {
        0 => GroupSignal::Joined,
        1 => GroupSignal::MemberJoined(RoomMember {
            feed,
            identifier: (feed % 3 != 0).then(|| target(feed as u8)),
            display_name: Some(format!("m{feed}")),
        }),
        2 => GroupSignal::MemberStreams {
            feed,
            streams: (0..s.byte() % 4)
                .map(|i| RoomStream {
                    mid: i.to_string(),
                    kind: [RoomStreamKind::Audio, RoomStreamKind::Video, RoomStreamKind::ScreenShare]
                        [usize::from(i % 3)],
                    active: s.byte() & 3 != 0,
                })
                .collect(),
        },
        3 => GroupSignal::MemberTalking { feed, talking: s.flag() },
        4 => GroupSignal::MemberLeft { feed, kicked: s.flag() },
        5 => match some_participant {
            Some(participant) => GroupSignal::InvitationDelivered { participant },
            None => GroupSignal::Joined,
        },
        6 => match some_participant {
            Some(participant) => GroupSignal::InvitationFailed { participant, code: 480 },
            None => GroupSignal::RoomClosed,
        },
        7 => GroupSignal::Declined { from: target(s.byte()), code: 603 },
        8 => GroupSignal::Removed,
        _ => GroupSignal::RoomClosed,
    }
}

/// Plays one script; panics when a property does not hold.
fn play(input: &[u8]) {
    let mut core = CallingCore::new(CoreConfig::default());
    let mut s = Script(input);
    let mut now = Instant::now();
    let mut seen: BTreeSet<CallId> = BTreeSet::new();
    let mut disconnected: BTreeSet<CallId> = BTreeSet::new();
    let mut steps = 0;
    while !s.0.is_empty() && steps < 400 {
        steps += 1;
        let mut known: Vec<CallId> = seen.iter().copied().collect();
        known.push(CallId(9_999));
        let call = known[usize::from(s.byte()) % known.len()];
        let participants: Vec<ParticipantId> = core.call(call).map(|c| c.participants.clone()).unwrap_or_default();
        match s.byte() % 16 {
            0 => {
                let n = 1 + usize::from(s.byte() % 20);
                let targets: Vec<Identifier> = (0..n).map(|_| target(s.byte())).collect();
                let _ = core.start_call(&targets, now);
            }
            1 => {
                let _ = core.incoming_call(target(s.byte()), None, now);
            }
            2 => drop(core.accept(call)),
            3 => drop(core.reject(call, [486, 603, 0, 999][usize::from(s.byte()) % 4])),
            4 => drop(core.hang_up(call, now)),
            5 | 6 => core.on_signal(call, signal(&mut s), now),
            7 => core.on_media(
                call,
                match s.byte() % 4 {
                    0 => MediaSignal::VideoNegotiated(true),
                    1 => MediaSignal::RemoteVideo(s.flag()),
                    2 => MediaSignal::AudioLevel { dbfs: -f32::from(s.byte()) },
                    _ => MediaSignal::Failed("ice".into()),
                },
                now,
            ),
            8..=10 => core.on_group(call, group_signal(&mut s, &participants), now),
            11 => {
                let step = Duration::from_millis(u64::from(s.byte()) * 250);
                now += step;
                core.handle_timeout(now);
            }
            12 => match s.byte() % 3 {
                0 => core.on_session_lost(),
                1 => core.set_connection_state(ConnectionState::Ready),
                _ => core.set_connection_state(ConnectionState::Connecting),
            },
            13 => {
                let streams: Vec<StreamId> = participants
                    .iter()
                    .filter_map(|p| core.participant(*p))
                    .flat_map(|p| p.streams.iter().map(|st| st.id))
                    .collect();
                if let Some(stream) = streams.get(usize::from(s.byte()) % streams.len().max(1)) {
                    let _ = core.add_renderer(*stream, ScalingMode::Fit);
                }
            }
            14 => {
                let ids: Vec<RendererId> = core.renderers().map(|r| r.id).collect();
                if let Some(id) = ids.get(usize::from(s.byte()) % ids.len().max(1)) {
                    let _ = core.remove_renderer(*id);
                }
            }
            _ => {
                let _ = core.add_participant(call, target(s.byte()));
                if let Some(p) = participants.first() {
                    let _ = core.remove_participant(call, *p);
                }
            }
        }

        let commands = std::iter::from_fn(|| core.poll_command()).count();
        let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
        assert!(commands + events.len() <= 400, "one step made {commands} commands and {} events", events.len());
        for event in &events {
            match event {
                Event::IncomingCall { call, .. } => {
                    seen.insert(*call);
                }
                Event::CallsUpdated { added, .. } => seen.extend(added.iter().copied()),
                Event::CallStateChanged { call, state } => {
                    assert!(!disconnected.contains(call), "{call:?} reported {state:?} after Disconnected");
                    if *state == CallState::Disconnected {
                        disconnected.insert(*call);
                        if let Some(info) = core.call(*call) {
                            assert!(info.end_reason.is_some(), "{call:?} disconnected without a reason");
                        }
                    }
                }
                _ => {}
            }
        }
        check_bounds(&core, &disconnected);
    }
}

fn check_bounds(core: &CallingCore, disconnected: &BTreeSet<CallId>) {
    let active = core.active_calls().count();
    let readable = core.calls.len();
    assert!(
        readable - active.min(readable) <= core.config().ended_calls_kept,
        "{} ended calls kept, bound {}",
        readable - active,
        core.config().ended_calls_kept
    );
    let mut per_call: BTreeMap<CallId, usize> = BTreeMap::new();
    for (id, (call, _)) in &core.participants {
        assert!(core.calls.contains_key(call), "participant {id:?} outlived its call {call:?}");
        *per_call.entry(*call).or_default() += 1;
    }
    for (call, n) in per_call {
        assert!(n <= MAX_MEMBERS + MAX_INVITEES, "{call:?} has {n} participants");
    }
    for r in core.renderers() {
        assert!(core.stream(r.stream).is_some(), "renderer {:?} outlived its stream", r.id);
    }
    for id in disconnected {
        if let Some(info) = core.call(*id) {
            assert_eq!(info.state, CallState::Disconnected, "{id:?} came back to life");
        }
    }
}

#[test]
fn calls_end_once_with_a_reason_and_every_map_stays_bounded() {
    // [call pick, op, args...]: a group call to three, the room joined, members churning with streams, renderers,
    // a lost session; a 1:1 call answered and hung up; an incoming call rejected.
    let seeds: &[&[u8]] = &[
        &[0, 0, 2, 0, 1, 3, 1, 8, 0, 0, 0, 1, 8, 0, 0, 1, 1, 8, 5, 0, 2, 3, 1, 1, 1, 13, 0, 1, 11, 200, 1, 12, 0],
        &[0, 0, 0, 0, 1, 5, 0, 1, 5, 2, 1, 7, 0, 1, 4, 1, 11, 40],
        &[0, 1, 2, 1, 3, 1, 1, 11, 250, 1, 11, 250],
    ];
    fuzz("calling::core properties", seeds, &[], play);
}
