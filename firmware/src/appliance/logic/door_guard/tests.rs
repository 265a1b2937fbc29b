use super::*;

fn user(id: &str) -> Identifier {
    Identifier::user(id).expect("a valid user")
}

fn phone(number: &str) -> Identifier {
    Identifier::phone(number, None).expect("a valid number")
}

const T0: u64 = 1_800_000_000;

#[test]
fn after_the_free_attempts_each_wrong_code_doubles_the_lockout_up_to_the_longest() {
    let p = GuardPolicy::default();
    let lockouts: Vec<Option<u64>> = (1..=16).map(|n| p.lockout_after(n).map(|d| d.as_secs())).collect();
    assert_eq!(&lockouts[..3], [None, None, None]);
    assert_eq!(&lockouts[3..6], [Some(60), Some(120), Some(240)]);
    assert_eq!(lockouts[14], Some(86_400), "capped at a day");
    assert_eq!(p.lockout_after(u32::MAX), Some(p.lockout_max), "no overflow");
}

#[test]
fn a_locked_out_caller_is_not_compared_until_the_lockout_ends() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::default(), T0);
    let mallory = user("mallory");
    for n in 0..3 {
        assert_eq!(g.gate(&mallory, T0 + n), Gate::Open);
        assert_eq!(g.wrong(&mallory, T0 + n), None);
    }
    assert_eq!(g.wrong(&mallory, T0 + 3), Some(Duration::from_secs(60)));
    assert_eq!(g.gate(&mallory, T0 + 4), Gate::Locked(Duration::from_secs(59)));
    assert_eq!(g.gate(&mallory, T0 + 63), Gate::Open);
    assert_eq!(g.wrong(&mallory, T0 + 63), Some(Duration::from_secs(120)));
}

#[test]
fn a_guesser_does_not_lock_the_residents_out_and_the_right_code_clears_a_count() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::default(), T0);
    for n in 0..10 {
        g.wrong(&user("mallory"), T0 + n);
    }
    assert!(matches!(g.gate(&user("mallory"), T0 + 10), Gate::Locked(_)));
    assert_eq!(g.gate(&user("alice"), T0 + 10), Gate::Open);
    g.wrong(&user("alice"), T0 + 11);
    g.wrong(&user("alice"), T0 + 12);
    assert!(g.right(&user("alice")));
    assert_eq!(g.state().callers.get("alice"), None);
    assert!(!g.right(&user("alice")), "nothing left to clear");
    for n in 0..3 {
        assert_eq!(g.wrong(&user("alice"), T0 + 20 + n), None, "the count started over");
    }
}

#[test]
fn phone_callers_share_one_count_since_their_caller_id_is_not_authenticated() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::default(), T0);
    for (n, number) in ["+4930111111", "+4930222222", "+4930333333", "+4930444444"].iter().enumerate() {
        g.wrong(&phone(number), T0 + n as u64);
    }
    assert!(matches!(g.gate(&phone("+4930999999"), T0 + 5), Gate::Locked(_)), "a fresh number is no way round");
    assert_eq!(g.gate(&user("alice"), T0 + 5), Gate::Open);
    assert!(g.right(&phone("+4930111111")), "the right code from a phone clears the phones' count");
    assert_eq!(g.gate(&phone("+4930999999"), T0 + 6), Gate::Open);
}

#[test]
fn the_state_survives_a_restart_and_a_clock_set_back_cannot_stretch_a_lockout() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::default(), T0);
    for n in 0..14 {
        g.wrong(&user("mallory"), T0 + n);
    }
    let kept = serde_json::to_string(g.state()).expect("serialises");
    let back: GuardState = serde_json::from_str(&kept).expect("reads back");
    let restarted = DoorGuard::new(GuardPolicy::default(), back.clone(), T0 + 20);
    assert!(matches!(restarted.gate(&user("mallory"), T0 + 20), Gate::Locked(_)), "a restart does not reset it");
    // Booted with the clock a year behind: the lockout still ends within the longest lockout of that clock.
    let year_back = T0 - 365 * 24 * 3600;
    let early = DoorGuard::new(GuardPolicy::default(), back, year_back);
    match early.gate(&user("mallory"), year_back) {
        Gate::Locked(left) => assert!(left <= GuardPolicy::default().lockout_max),
        Gate::Open => panic!("still locked"),
    }
}

#[test]
fn a_damaged_state_starts_everyone_at_the_end_of_the_free_attempts() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::distrusted(&GuardPolicy::default()), T0);
    assert_eq!(g.wrong(&user("anyone"), T0), Some(Duration::from_secs(60)), "the first wrong code locks");
}

#[test]
fn the_kept_counts_are_bounded_and_old_ones_forgotten() {
    let mut g = DoorGuard::new(GuardPolicy::default(), GuardState::default(), T0);
    for n in 0..(MAX_CALLERS as u64 + 10) {
        g.wrong(&user(&format!("u{n}")), T0 + n);
    }
    assert_eq!(g.state().callers.len(), MAX_CALLERS);
    assert!(!g.state().callers.contains_key("u0"), "the oldest is forgotten first");
    g.wrong(&user("late"), T0 + FORGET_AFTER_SECS + 1000);
    assert_eq!(g.state().callers.len(), 1, "a month without a wrong code forgets a count");
}

#[test]
fn a_four_digit_code_takes_more_than_a_year_to_exhaust_under_the_default_policy() {
    let years = GuardPolicy::default().seconds_to_exhaust(4) as f64 / (365.25 * 24.0 * 3600.0);
    assert!(years > 1.0, "{years:.1} years");
    assert!((27.0..28.0).contains(&years), "{years:.2} years: about 10,000 days");
}
