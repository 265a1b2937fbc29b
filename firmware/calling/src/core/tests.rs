//! Unit tests of every transition of the calling core.

use super::*;
use crate::model::ScalingMode;

fn bob() -> Identifier {
    Identifier::user("bob").unwrap()
}

fn ready_core() -> (CallingCore, Instant) {
    let mut core = CallingCore::new(CoreConfig::default());
    core.set_connection_state(ConnectionState::Ready);
    drain_events(&mut core);
    (core, Instant::now())
}

fn drain_events(core: &mut CallingCore) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn drain_commands(core: &mut CallingCore) -> Vec<Command> {
    std::iter::from_fn(|| core.poll_command()).collect()
}

fn pid(core: &CallingCore, call: CallId) -> ParticipantId {
    core.call(call).unwrap().participants[0]
}

fn connected_call(core: &mut CallingCore, now: Instant) -> CallId {
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_signal(call, SignalEvent::Ringing, now);
    core.on_signal(call, SignalEvent::Accepted, now);
    drain_events(core);
    drain_commands(core);
    call
}

#[test]
fn outgoing_call_walks_connecting_ringing_early_media_connected() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::PlaceCall { call, target: bob() }]);
    let p = pid(&core, call);
    let ev = drain_events(&mut core);
    assert_eq!(ev[0], Event::CallsUpdated { added: vec![call], removed: vec![] });
    assert_eq!(ev[1], Event::CallStateChanged { call, state: CallState::Connecting });
    assert_eq!(ev[2], Event::RemoteParticipantsUpdated { call, added: vec![p], removed: vec![] });
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::Connecting);

    core.on_signal(call, SignalEvent::Ringing, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Ringing);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::Ringing);
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    assert_eq!(core.call(call).unwrap().state, CallState::EarlyMedia);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::EarlyMedia);
    core.on_signal(call, SignalEvent::Accepted, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::Connected);
    assert_eq!(core.call(call).unwrap().connected_at, Some(now));
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::ParticipantStateChanged { call, participant: p, state: ParticipantState::Connected }));
}

#[test]
fn ringing_after_early_media_does_not_go_back() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    core.on_signal(call, SignalEvent::Ringing, now);
    assert_eq!(core.call(call).unwrap().state, CallState::EarlyMedia);
}

#[test]
fn calls_need_a_ready_connection_one_target_and_no_other_call() {
    let mut core = CallingCore::new(CoreConfig::default());
    let now = Instant::now();
    assert_eq!(core.start_call(&[bob()], now), Err(CallingError::NotReady(ConnectionState::Disconnected)));
    core.set_connection_state(ConnectionState::Ready);
    assert_eq!(core.start_call(&[], now), Err(CallingError::NoTargets));
    core.start_call(&[bob()], now).unwrap();
    assert_eq!(core.start_call(&[bob()], now), Err(CallingError::Busy));
}

#[test]
fn remote_decline_ends_with_the_sip_code() {
    for (code, reason) in [(603, "Decline"), (486, "Busy Here"), (480, "Temporarily Unavailable"), (404, "")] {
        let (mut core, now) = ready_core();
        let call = core.start_call(&[bob()], now).unwrap();
        core.on_signal(call, SignalEvent::Ringing, now);
        drain_commands(&mut core);
        core.on_signal(call, SignalEvent::Hangup { code, reason: reason.into() }, now);
        let info = core.call(call).unwrap();
        assert_eq!(info.state, CallState::Disconnected);
        let end = info.end_reason.clone().unwrap();
        assert_eq!((end.code, end.subcode), (code, 0));
        assert!(!end.message.is_empty());
        let p = core.participant(pid(&core, call)).unwrap();
        assert_eq!(p.state, ParticipantState::Disconnected);
        assert_eq!(p.call_end_reason.as_ref().unwrap().code, code);
        assert_eq!(drain_commands(&mut core), vec![Command::ReleaseMedia { call }]);
    }
}

#[test]
fn local_hang_up_goes_through_disconnecting_and_reports_local_reason() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.hang_up(call, now).unwrap();
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnecting);
    assert_eq!(drain_commands(&mut core), vec![Command::HangUp { call }]);
    // A second hang-up while disconnecting is harmless.
    core.hang_up(call, now).unwrap();
    assert!(drain_commands(&mut core).is_empty());
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: "BYE".into() }, now);
    let info = core.call(call).unwrap();
    assert_eq!(info.state, CallState::Disconnected);
    assert_eq!(info.end_reason, Some(CallEndReason::local_hang_up()));
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::CallsUpdated { added: vec![], removed: vec![call] }));
    assert_eq!(
        core.hang_up(call, now),
        Err(CallingError::InvalidState { call, state: CallState::Disconnected, action: "hang up" })
    );
}

#[test]
fn unconfirmed_hang_up_ends_the_call_at_the_timeout() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.hang_up(call, now).unwrap();
    let deadline = core.poll_timeout().unwrap();
    assert_eq!(deadline, now + core.config().hang_up_timeout);
    core.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnecting);
    core.handle_timeout(deadline);
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
    assert_eq!(core.call(call).unwrap().end_reason, Some(CallEndReason::local_hang_up()));
}

#[test]
fn remote_bye_on_established_call_is_a_remote_hang_up() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: "Session Terminated".into() }, now);
    assert_eq!(core.call(call).unwrap().end_reason, Some(CallEndReason::remote_hang_up()));
}

#[test]
fn caller_cancel_shows_487_at_the_callee() {
    let (mut core, now) = ready_core();
    let call = core.incoming_call(bob(), None, now);
    core.on_signal(call, SignalEvent::Hangup { code: 487, reason: "Request Terminated".into() }, now);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().unwrap().code, 487);
}

#[test]
fn unanswered_call_times_out_with_408() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_signal(call, SignalEvent::Ringing, now);
    drain_commands(&mut core);
    let deadline = core.poll_timeout().unwrap();
    assert_eq!(deadline, now + core.config().ring_timeout);
    core.handle_timeout(deadline);
    let end = core.call(call).unwrap().end_reason.clone().unwrap();
    assert_eq!((end.code, end.subcode), (408, subcode::NO_ANSWER_TIMEOUT));
    assert_eq!(drain_commands(&mut core), vec![Command::HangUp { call }, Command::ReleaseMedia { call }]);
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn answered_call_has_no_ring_timeout() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn incoming_call_is_announced_then_accepted() {
    let (mut core, now) = ready_core();
    let call = core.incoming_call(bob(), Some("Bob".into()), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Incoming);
    assert_eq!(core.call(call).unwrap().direction, CallDirection::Incoming);
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::IncomingCall { call, from: bob(), display_name: Some("Bob".into()) }));
    core.accept(call).unwrap();
    assert_eq!(core.call(call).unwrap().state, CallState::Connecting);
    assert_eq!(drain_commands(&mut core), vec![Command::Answer { call }]);
    core.on_signal(call, SignalEvent::Accepted, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(
        core.accept(call),
        Err(CallingError::InvalidState { call, state: CallState::Connected, action: "accept" })
    );
}

#[test]
fn incoming_call_rejected_with_a_code() {
    let (mut core, now) = ready_core();
    let call = core.incoming_call(bob(), None, now);
    core.reject(call, 486).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::Decline { call, code: 486 }, Command::ReleaseMedia { call }]);
    assert_eq!(core.call(call).unwrap().end_reason.as_ref().unwrap().code, 486);
    // Hanging up an incoming call is a 603 decline.
    let call2 = core.incoming_call(bob(), None, now);
    core.hang_up(call2, now).unwrap();
    assert_eq!(drain_commands(&mut core)[0], Command::Decline { call: call2, code: 603 });
}

#[test]
fn incoming_call_during_a_call_is_declined_busy() {
    let (mut core, now) = ready_core();
    let first = connected_call(&mut core, now);
    let second = core.incoming_call(Identifier::user("carol").unwrap(), None, now);
    assert_eq!(drain_commands(&mut core)[0], Command::Decline { call: second, code: 486 });
    let end = core.call(second).unwrap().end_reason.clone().unwrap();
    assert_eq!((end.code, end.subcode), (486, subcode::BUSY_LOCALLY));
    assert!(!drain_events(&mut core).iter().any(|e| matches!(e, Event::IncomingCall { .. })));
    assert_eq!(core.call(first).unwrap().state, CallState::Connected);
}

#[test]
fn mute_and_video_emit_changes_commands_and_state_for_the_peer() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.set_muted(call, true).unwrap();
    assert!(core.call(call).unwrap().is_muted);
    assert_eq!(drain_events(&mut core), vec![Event::CallIsMutedChanged { call, is_muted: true }]);
    assert_eq!(
        drain_commands(&mut core),
        vec![
            Command::SetMicrophoneMuted { call, muted: true },
            Command::SendState { call, muted: true, video_on: true }
        ]
    );
    // Muting again changes nothing.
    core.set_muted(call, true).unwrap();
    assert!(drain_events(&mut core).is_empty());
    core.set_video(call, false).unwrap();
    assert_eq!(drain_events(&mut core), vec![Event::CallIsVideoOnChanged { call, is_video_on: false }]);
    assert_eq!(drain_commands(&mut core)[1], Command::SendState { call, muted: true, video_on: false });
}

#[test]
fn peer_state_sets_remote_mute_and_video_availability() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    let p = pid(&core, call);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    let stream = core.participant(p).unwrap().streams[0];
    assert_eq!(stream.kind, VideoStreamKind::Video);
    assert!(!stream.is_available);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    assert!(core.participant(p).unwrap().streams[0].is_available);
    drain_events(&mut core);

    core.on_signal(call, SignalEvent::PeerState { muted: Some(true), video_on: Some(false) }, now);
    assert!(core.participant(p).unwrap().is_muted);
    assert!(!core.participant(p).unwrap().streams[0].is_available);
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::ParticipantIsMutedChanged { call, participant: p, is_muted: true }));
    assert!(ev.contains(&Event::StreamIsAvailableChanged {
        call,
        participant: p,
        stream: stream.id,
        is_available: false
    }));
    core.on_signal(call, SignalEvent::PeerState { muted: Some(false), video_on: Some(true) }, now);
    assert!(!core.participant(p).unwrap().is_muted);
    assert!(core.participant(p).unwrap().streams[0].is_available);
}

#[test]
fn video_stream_is_added_once_and_removed_at_the_end() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    let p = pid(&core, call);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    let ev = drain_events(&mut core);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::VideoStreamsUpdated { .. })).count(), 1);
    let sid = core.participant(p).unwrap().streams[0].id;
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    assert!(core.participant(p).unwrap().streams.is_empty());
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::VideoStreamsUpdated { call, participant: p, added: vec![], removed: vec![sid] }));
}

#[test]
fn local_hold_and_resume() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    assert_eq!(
        core.resume(call),
        Err(CallingError::InvalidState { call, state: CallState::Connected, action: "resume" })
    );
    core.hold(call).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::Hold { call }]);
    core.on_signal(call, SignalEvent::LocalHold(true), now);
    assert_eq!(core.call(call).unwrap().state, CallState::LocalHold);
    // The far end's participant does not change for a local hold.
    assert_eq!(core.participant(pid(&core, call)).unwrap().state, ParticipantState::Connected);
    core.resume(call).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::Resume { call }]);
    core.on_signal(call, SignalEvent::LocalHold(false), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn remote_hold_puts_the_participant_on_hold() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    let p = pid(&core, call);
    core.on_signal(call, SignalEvent::RemoteHold(true), now);
    assert_eq!(core.call(call).unwrap().state, CallState::RemoteHold);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::OnHold);
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::ParticipantStateChanged { call, participant: p, state: ParticipantState::OnHold }));
    core.on_signal(call, SignalEvent::RemoteHold(false), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::Connected);
}

#[test]
fn both_sides_on_hold_resume_in_either_order() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    let p = pid(&core, call);
    core.on_signal(call, SignalEvent::LocalHold(true), now);
    core.on_signal(call, SignalEvent::RemoteHold(true), now);
    assert_eq!(core.call(call).unwrap().state, CallState::LocalHold);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::OnHold);
    core.on_signal(call, SignalEvent::RemoteHold(false), now);
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::Connected);
    core.on_signal(call, SignalEvent::LocalHold(false), now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
}

#[test]
fn dtmf_is_validated_sent_and_received() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    drain_commands(&mut core);
    assert!(matches!(core.send_dtmf(call, '5'), Err(CallingError::InvalidState { .. })));
    core.on_signal(call, SignalEvent::Accepted, now);
    assert_eq!(core.send_dtmf(call, 'x'), Err(CallingError::InvalidDtmf('X')));
    core.send_dtmf(call, '#').unwrap();
    core.send_dtmf(call, 'a').unwrap();
    assert_eq!(
        drain_commands(&mut core),
        vec![Command::SendDtmf { call, digit: '#' }, Command::SendDtmf { call, digit: 'A' }]
    );
    drain_events(&mut core);
    core.on_signal(call, SignalEvent::Dtmf('7'), now);
    assert_eq!(drain_events(&mut core), vec![Event::DtmfReceived { call, digit: '7' }]);
}

#[test]
fn speaking_follows_the_level_with_hysteresis_and_hangover() {
    let (mut core, t0) = ready_core();
    let call = connected_call(&mut core, t0);
    let p = pid(&core, call);
    let level = |core: &mut CallingCore, dbfs, ms| {
        core.on_media(call, MediaSignal::AudioLevel { dbfs }, t0 + Duration::from_millis(ms))
    };
    level(&mut core, -60.0, 0);
    assert!(!core.participant(p).unwrap().is_speaking);
    level(&mut core, -20.0, 100);
    assert!(core.participant(p).unwrap().is_speaking);
    // Between the thresholds: stays speaking.
    level(&mut core, -43.0, 200);
    assert!(core.participant(p).unwrap().is_speaking);
    // Quiet, but not for long enough.
    level(&mut core, -70.0, 300);
    let due = core.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_millis(300) + core.config().speaking_hangover);
    level(&mut core, -70.0, 400);
    core.handle_timeout(due - Duration::from_millis(1));
    assert!(core.participant(p).unwrap().is_speaking);
    core.handle_timeout(due);
    assert!(!core.participant(p).unwrap().is_speaking);
    let ev = drain_events(&mut core);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::ParticipantIsSpeakingChanged { .. })).count(), 2);
}

#[test]
fn speaking_needs_an_established_call() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_media(call, MediaSignal::AudioLevel { dbfs: -10.0 }, now);
    assert!(!core.participant(pid(&core, call)).unwrap().is_speaking);
}

#[test]
fn media_failure_ends_the_call_with_500() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.on_media(call, MediaSignal::Failed("ICE failed".into()), now);
    let end = core.call(call).unwrap().end_reason.clone().unwrap();
    assert_eq!((end.code, end.subcode), (500, subcode::MEDIA_FAILED));
    assert!(end.message.contains("ICE failed"));
    assert_eq!(drain_commands(&mut core), vec![Command::HangUp { call }, Command::ReleaseMedia { call }]);
}

#[test]
fn setup_failure_ends_the_call_with_its_reason() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    drain_commands(&mut core);
    let reason = CallEndReason::new(500, subcode::SETUP_FAILED, "no media");
    core.on_signal(call, SignalEvent::Failed(reason.clone()), now);
    assert_eq!(core.call(call).unwrap().end_reason, Some(reason));
}

#[test]
fn session_loss_ends_every_active_call() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.on_session_lost();
    let end = core.call(call).unwrap().end_reason.clone().unwrap();
    assert_eq!((end.code, end.subcode), (500, subcode::SIGNALING_LOST));
}

#[test]
fn signals_for_ended_or_unknown_calls_are_ignored() {
    let (mut core, now) = ready_core();
    let call = connected_call(&mut core, now);
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    drain_events(&mut core);
    core.on_signal(call, SignalEvent::Accepted, now);
    core.on_signal(CallId(999), SignalEvent::Ringing, now);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    assert!(drain_events(&mut core).is_empty());
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
}

#[test]
fn ended_calls_are_forgotten_beyond_the_bound() {
    let mut core = CallingCore::new(CoreConfig { ended_calls_kept: 2, ..CoreConfig::default() });
    core.set_connection_state(ConnectionState::Ready);
    let now = Instant::now();
    let ids: Vec<CallId> = (0..3)
        .map(|_| {
            let c = core.incoming_call(bob(), None, now);
            core.reject(c, 603).unwrap();
            c
        })
        .collect();
    assert!(core.call(ids[0]).is_none());
    assert!(core.call(ids[1]).is_some());
    assert!(core.call(ids[2]).is_some());
    assert_eq!(core.active_calls().count(), 0);
}

#[test]
fn connection_state_changes_are_events() {
    let mut core = CallingCore::new(CoreConfig::default());
    core.set_connection_state(ConnectionState::Connecting);
    core.set_connection_state(ConnectionState::Connecting);
    core.set_connection_state(ConnectionState::Ready);
    assert_eq!(
        drain_events(&mut core),
        vec![
            Event::ConnectionStateChanged { state: ConnectionState::Connecting },
            Event::ConnectionStateChanged { state: ConnectionState::Ready }
        ]
    );
}

fn call_with_video(core: &mut CallingCore, now: Instant) -> (CallId, ParticipantId, StreamId) {
    let call = connected_call(core, now);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    let p = pid(core, call);
    let stream = core.participant(p).unwrap().streams[0].id;
    drain_events(core);
    (call, p, stream)
}

#[test]
fn renderers_come_and_go_with_events() {
    let (mut core, now) = ready_core();
    let (call, p, stream) = call_with_video(&mut core, now);
    let r = core.add_renderer(stream, ScalingMode::Crop).unwrap();
    let info = *core.renderer(r).unwrap();
    assert_eq!((info.call, info.participant, info.stream, info.scaling_mode), (call, p, stream, ScalingMode::Crop));
    assert!(info.is_rendering && !info.is_paused);
    assert_eq!(core.stream_renderers(stream), vec![r]);
    assert_eq!(
        drain_events(&mut core),
        vec![Event::ActiveRenderersUpdated { call, participant: p, stream, added: vec![r], removed: vec![] }]
    );
    core.set_renderer_scaling_mode(r, ScalingMode::Fit).unwrap();
    core.set_renderer_scaling_mode(r, ScalingMode::Fit).unwrap();
    assert_eq!(
        drain_events(&mut core),
        vec![Event::RendererScalingModeChanged { call, participant: p, renderer: r, scaling_mode: ScalingMode::Fit }]
    );
    core.remove_renderer(r).unwrap();
    assert!(core.stream_renderers(stream).is_empty());
    assert_eq!(core.remove_renderer(r), Err(CallingError::NoSuchRenderer(r)));
    assert_eq!(core.add_renderer(StreamId(999), ScalingMode::Fit), Err(CallingError::NoSuchStream(StreamId(999))));
}

#[test]
fn is_rendering_follows_pause_and_the_stream_and_ends_with_the_call() {
    let (mut core, now) = ready_core();
    let (call, p, stream) = call_with_video(&mut core, now);
    let r = core.add_renderer(stream, ScalingMode::Fit).unwrap();
    drain_events(&mut core);
    let rendering = |core: &CallingCore| core.renderer(r).unwrap().is_rendering;
    core.set_renderer_paused(r, true).unwrap();
    assert!(!rendering(&core) && core.renderer(r).unwrap().is_paused);
    core.set_renderer_paused(r, false).unwrap();
    assert!(rendering(&core));
    // The far end's video stops: not rendering (but the renderer stays, and resumes with the stream).
    core.on_media(call, MediaSignal::RemoteVideo(false), now);
    assert!(!rendering(&core));
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    assert!(rendering(&core));
    let changes =
        drain_events(&mut core).into_iter().filter(|e| matches!(e, Event::RendererIsRenderingChanged { .. })).count();
    assert_eq!(changes, 4);
    // The call ends: the stream goes, and its renderer is disposed.
    core.on_signal(call, SignalEvent::Hangup { code: 200, reason: String::new() }, now);
    assert!(core.renderer(r).is_none());
    let ev = drain_events(&mut core);
    assert!(ev.contains(&Event::ActiveRenderersUpdated {
        call,
        participant: p,
        stream,
        added: vec![],
        removed: vec![r]
    }));
}

#[test]
fn outgoing_early_media_mutes_the_microphone_until_answered_and_shows_video_early() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_signal(call, SignalEvent::Ringing, now);
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    drain_commands(&mut core);
    let p = pid(&core, call);
    assert!(core.participant(p).unwrap().streams.is_empty(), "no video stream while only ringing");
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    assert_eq!(drain_commands(&mut core), vec![Command::SetMicrophoneMuted { call, muted: true }]);
    assert!(!core.call(call).unwrap().is_muted, "not the user's mute");
    let streams = &core.participant(p).unwrap().streams;
    assert_eq!(streams.len(), 1, "the far end's early video is a stream to render");
    assert!(streams[0].is_available);
    // Answered: the user's choices come back (here: microphone on, camera on).
    core.on_signal(call, SignalEvent::Accepted, now);
    assert_eq!(
        drain_commands(&mut core),
        vec![Command::SetMicrophoneMuted { call, muted: false }, Command::SetVideoEnabled { call, enabled: true }]
    );
    assert_eq!(core.participant(p).unwrap().streams.len(), 1, "the same stream goes on: no gap");
}

#[test]
fn a_user_muted_during_early_media_stays_muted_once_answered() {
    let (mut core, now) = ready_core();
    let call = core.start_call(&[bob()], now).unwrap();
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    core.set_muted(call, true).unwrap();
    drain_commands(&mut core);
    core.on_signal(call, SignalEvent::Accepted, now);
    let commands = drain_commands(&mut core);
    assert!(commands.contains(&Command::SetMicrophoneMuted { call, muted: true }), "{commands:?}");
}

#[test]
fn early_media_can_leave_the_microphone_on_when_configured() {
    let mut core = CallingCore::new(CoreConfig { mute_microphone_in_early_media: false, ..CoreConfig::default() });
    core.set_connection_state(ConnectionState::Ready);
    let now = Instant::now();
    let call = core.start_call(&[bob()], now).unwrap();
    drain_commands(&mut core);
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    assert_eq!(drain_commands(&mut core), vec![]);
}

#[test]
fn an_incoming_call_answered_early_rings_on_with_the_callers_video_then_connects() {
    let (mut core, now) = ready_core();
    let call = core.incoming_call(bob(), None, now);
    drain_events(&mut core);
    core.answer_early(call).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::AnswerEarly { call }]);
    assert!(core.answer_early(call).is_err(), "once per call");
    core.on_media(call, MediaSignal::VideoNegotiated(true), now);
    core.on_media(call, MediaSignal::RemoteVideo(true), now);
    core.on_signal(call, SignalEvent::EarlyMedia, now);
    let p = pid(&core, call);
    assert_eq!(core.call(call).unwrap().state, CallState::Incoming, "still ringing");
    assert_eq!(core.participant(p).unwrap().state, ParticipantState::EarlyMedia);
    assert!(core.participant(p).unwrap().streams.iter().any(|s| s.is_available), "the caller's video shows");
    // Answered: the engine answers with the early media's session, and our microphone and camera come on.
    core.accept(call).unwrap();
    assert_eq!(drain_commands(&mut core), vec![Command::Answer { call }]);
    core.on_signal(call, SignalEvent::Accepted, now);
    assert_eq!(core.call(call).unwrap().state, CallState::Connected);
    assert_eq!(
        drain_commands(&mut core),
        vec![Command::SetMicrophoneMuted { call, muted: false }, Command::SetVideoEnabled { call, enabled: true }]
    );
}

#[test]
fn an_incoming_call_answered_early_can_still_be_declined() {
    let (mut core, now) = ready_core();
    let call = core.incoming_call(bob(), None, now);
    core.answer_early(call).unwrap();
    drain_commands(&mut core);
    core.reject(call, 603).unwrap();
    assert_eq!(drain_commands(&mut core)[0], Command::Decline { call, code: 603 });
    assert_eq!(core.call(call).unwrap().state, CallState::Disconnected);
    // Early media is only for a ringing incoming call.
    let out = core.start_call(&[bob()], now).unwrap();
    assert!(core.answer_early(out).is_err());
}

/// The group calls' share of the core's tests.
mod group;
mod properties;
