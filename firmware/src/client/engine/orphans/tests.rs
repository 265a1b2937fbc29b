use super::*;

fn adopt(o: &mut Orphans, call: u64) -> bool {
    let call_id = GroupCallId::new(format!("g{call}")).expect("a valid id");
    o.adopt(CallId(call), 1000 + call, Secret::new(format!("s{call}")), call_id)
}

fn user(n: usize) -> Identifier {
    Identifier::user(&format!("u{n}")).expect("a valid user")
}

#[test]
fn janus_rooms_outlive_their_session_an_owned_room_is_kept_and_closed_once_with_its_secret() {
    // Janus's videoroom keeps a room after its creator's session is gone; only its secret destroys it.
    let mut o = Orphans::default();
    assert!(adopt(&mut o, 1));
    assert!(adopt(&mut o, 2));
    let taken = o.take();
    let rooms: Vec<(CallId, u64, &str)> = taken.iter().map(|r| (r.call, r.room, r.secret.expose())).collect();
    assert_eq!(rooms, [(CallId(1), 1001, "s1"), (CallId(2), 1002, "s2")]);
    assert!(o.take().is_empty(), "each room is closed once");
}

#[test]
fn invitations_withdrawn_while_disconnected_are_kept_once_each_and_bounded() {
    // The invitees of a call that ended with the session still ring until they hear the call is off.
    let mut o = Orphans::default();
    adopt(&mut o, 1);
    assert_eq!(o.cancel_later(CallId(2), &user(0)), Cancel::NoRoom);
    assert_eq!(o.cancel_later(CallId(1), &user(0)), Cancel::Kept);
    assert_eq!(o.cancel_later(CallId(1), &user(0)), Cancel::Kept);
    for n in 1..MAX_INVITEES {
        assert_eq!(o.cancel_later(CallId(1), &user(n)), Cancel::Kept);
    }
    assert_eq!(o.cancel_later(CallId(1), &user(MAX_INVITEES)), Cancel::Full);
    let taken = o.take();
    assert_eq!(taken[0].cancels.len(), MAX_INVITEES);
    assert_eq!(taken[0].cancels[0], user(0));
}

#[test]
fn beyond_the_bound_a_room_is_left_to_janus() {
    let mut o = Orphans::default();
    for call in 0..MAX_ORPHANS as u64 {
        assert!(adopt(&mut o, call));
    }
    assert!(!adopt(&mut o, 99));
    assert_eq!(o.take().len(), MAX_ORPHANS);
}
