use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 250 ms doubling up to 2 s; jitter 1.0 takes the ceiling, so the delays are exact.
fn backoff() -> Backoff {
    Backoff { initial: ms(250), max: ms(2000), max_attempts: None }
}

fn connected(refresh_in: Option<Duration>) -> (Upkeep, Instant) {
    let t0 = Instant::now();
    (Upkeep::connected(backoff(), refresh_in, t0), t0)
}

#[test]
fn the_token_is_fetched_when_its_policy_says_and_one_fetch_runs_at_a_time() {
    let (mut u, t0) = connected(Some(ms(3000)));
    assert_eq!(u.poll_timeout(), Some(t0 + ms(3000)));
    assert_eq!(u.poll_due(t0 + ms(2999)), None);
    assert_eq!(u.poll_due(t0 + ms(3000)), Some(Due::Refresh));
    // Due again while the first runs (a 403 meanwhile): no second fetch; the first one's report schedules.
    u.unauthorized(t0 + ms(3100));
    assert_eq!(u.poll_due(t0 + ms(3100)), None);
    assert_eq!(u.poll_timeout(), None);
    u.refresh_succeeded(Some(ms(5000)), t0 + ms(4000));
    assert_eq!(u.poll_timeout(), Some(t0 + ms(9000)));
}

#[test]
fn a_failed_fetch_is_retried_with_growing_capped_backoff_and_a_success_resets_it() {
    let (mut u, t0) = connected(Some(ms(0)));
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        assert_eq!(u.poll_due(now), Some(Due::Refresh));
        let delay = u.refresh_failed(1.0, now);
        assert_eq!(u.poll_timeout(), Some(now + delay));
        delays.push(delay.as_millis());
        now += delay;
    }
    assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
    assert_eq!(u.poll_due(now), Some(Due::Refresh));
    u.refresh_succeeded(Some(ms(60_000)), now);
    u.unauthorized(now);
    assert_eq!(u.poll_due(now), Some(Due::Refresh));
    assert_eq!(u.refresh_failed(1.0, now), ms(250), "a success starts the backoff over");
}

#[test]
fn janus_unauthorized_a_403_on_a_request_of_ours_fetches_the_token_now() {
    // Janus's token_auth answers 403 to a keepalive or claim once the token it knows has expired.
    let (mut u, t0) = connected(Some(ms(60_000)));
    u.unauthorized(t0 + ms(10));
    assert_eq!(u.poll_timeout(), Some(t0 + ms(10)));
    assert_eq!(u.poll_due(t0 + ms(10)), Some(Due::Refresh));
}

#[test]
fn registrar_refusal_the_token_is_fetched_again_a_second_later() {
    // Kamailio's auth_ephemeral refuses a REGISTER whose credentials expired: new ones come with a new token.
    let (mut u, t0) = connected(None);
    assert_eq!(u.registration_failed(1.0, t0), REGISTRATION_RETRY);
    assert_eq!(u.poll_due(t0 + ms(999)), None);
    assert_eq!(u.poll_due(t0 + REGISTRATION_RETRY), Some(Due::Refresh));
}

#[test]
fn refusals_in_a_row_back_off_whatever_the_fetches_do_until_a_registration_succeeds() {
    // A registrar that keeps refusing (a device removed, a clock far off) is not asked every second forever; the
    // new token each fetch brings does not start the delays over, a successful registration does.
    let mut u = Upkeep::connected(
        crate::calling::Backoff { initial: ms(500), max: Duration::from_secs(30), max_attempts: None },
        None,
        Instant::now(),
    );
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..8 {
        let delay = u.registration_failed(1.0, now);
        delays.push(delay.as_secs());
        now += delay;
        assert_eq!(u.poll_due(now), Some(Due::Refresh));
        u.refresh_succeeded(None, now);
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    // Jitter draws each delay in [half, all] of its ceiling, never under a second.
    assert_eq!(u.registration_failed(0.0, now), Duration::from_secs(15));
    u.registered();
    assert_eq!(u.registration_failed(0.0, now), REGISTRATION_RETRY);
    assert_eq!(u.registration_failed(0.0, now), Duration::from_secs(1), "the second: 2 s ceiling, drawn at half");
}

#[test]
fn janus_session_lost_the_first_attempt_is_due_at_once_and_nothing_is_refreshed_meanwhile() {
    // A session Janus timed out (or lost in a restart) cannot be claimed: calls end, a new one is built.
    let (mut u, t0) = connected(Some(ms(100)));
    u.session_lost(t0);
    assert_eq!(u.poll_due(t0), Some(Due::Reconnect { generation: 2 }));
    assert_eq!(u.poll_due(t0 + ms(500)), None, "the refresh of the lost connection is dropped");
    u.unauthorized(t0 + ms(600));
    u.registration_failed(0.5, t0 + ms(600));
    assert_eq!(u.poll_timeout(), None, "while reconnecting, each attempt fetches its own token");
}

#[test]
fn failed_attempts_back_off_and_the_connection_that_succeeds_schedules_its_refresh() {
    let (mut u, t0) = connected(None);
    u.session_lost(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for generation in 2..7 {
        assert_eq!(u.poll_due(now), Some(Due::Reconnect { generation }));
        assert_eq!(u.generation(), generation);
        let delay = u.reconnect_failed(generation, 1.0, now).expect("the current attempt");
        delays.push(delay.as_millis());
        now += delay;
    }
    assert_eq!(delays, [250, 500, 1000, 2000, 2000]);
    assert_eq!(u.poll_due(now), Some(Due::Reconnect { generation: 7 }));
    assert!(u.reconnect_succeeded(7, Some(ms(30_000)), now));
    assert_eq!(u.poll_timeout(), Some(now + ms(30_000)), "connected: its token's refresh is scheduled");
    // The next loss starts the backoff over.
    u.session_lost(now);
    assert_eq!(u.poll_due(now), Some(Due::Reconnect { generation: 8 }));
    assert_eq!(u.reconnect_failed(8, 1.0, now), Some(ms(250)));
}

#[test]
fn a_report_of_an_overtaken_or_unneeded_attempt_is_stale() {
    let (mut u, t0) = connected(None);
    u.session_lost(t0);
    assert_eq!(u.poll_due(t0), Some(Due::Reconnect { generation: 2 }));
    assert_eq!(u.reconnect_failed(1, 1.0, t0), None, "an older generation");
    assert!(!u.reconnect_succeeded(1, None, t0));
    assert!(u.reconnect_succeeded(2, None, t0));
    assert!(!u.reconnect_succeeded(2, None, t0), "already connected: a second report changes nothing");
    assert_eq!(u.reconnect_failed(2, 1.0, t0), None);
    u.unauthorized(t0);
    assert_eq!(u.poll_due(t0), Some(Due::Refresh), "connected by the attempt of generation 2");
}

#[test]
fn a_fetch_that_was_running_when_the_session_was_lost_schedules_nothing() {
    let (mut u, t0) = connected(Some(ms(0)));
    assert_eq!(u.poll_due(t0), Some(Due::Refresh));
    u.session_lost(t0);
    assert_eq!(u.poll_due(t0), Some(Due::Reconnect { generation: 2 }));
    u.refresh_failed(1.0, t0);
    u.refresh_succeeded(Some(ms(10)), t0);
    assert_eq!(u.poll_timeout(), None);
}

#[test]
fn a_refresh_time_too_far_to_represent_is_no_deadline() {
    // A token whose `exp` is absurdly far: no overflow, no panic; it is simply never refreshed by the clock.
    let (mut u, t0) = connected(Some(Duration::MAX));
    assert_eq!(u.poll_timeout(), None);
    u.refresh_succeeded(Some(Duration::MAX), t0);
    assert_eq!(u.poll_timeout(), None);
}
