use super::*;

fn user(id: &str) -> Identifier {
    Identifier::user(id).expect("a valid user")
}

fn phone(number: &str) -> Identifier {
    Identifier::phone(number, None).expect("a valid number")
}

#[test]
fn the_shipped_default_lets_users_ring_and_nobody_in_or_auto_answered() {
    let a = Admission::default();
    assert_eq!(a.incoming(&user("anyone")), Admit::Ring { auto_answer: false });
    assert_eq!(a.incoming(&phone("+4930123456")), Admit::Refuse(603), "the trunk's caller ids are not trusted");
    for direction in [Direction::CallIn, Direction::CallOut] {
        assert!(!a.may_open(&user("anyone"), direction));
    }
}

#[test]
fn callers_outside_the_list_are_refused_with_the_configured_code() {
    let a = Admission {
        callers: Parties::of(vec![Party::Exactly(user("alice")), Party::NumberPrefix("+4930".into())]),
        refuse_code: 486,
        ..Admission::default()
    };
    assert_eq!(a.incoming(&user("alice")), Admit::Ring { auto_answer: false });
    assert_eq!(a.incoming(&phone("+49301234567")), Admit::Ring { auto_answer: false });
    assert_eq!(a.incoming(&user("mallory")), Admit::Refuse(486));
    assert_eq!(a.incoming(&phone("+49401234567")), Admit::Refuse(486));
    assert_eq!(a.incoming(&phone("+1555430123")), Admit::Refuse(486), "a prefix matches at the start only");
}

#[test]
fn only_the_named_callers_are_answered_on_their_own() {
    // An indoor monitor answers its own door station by itself, not the other callers it lets ring.
    let a = Admission { auto_answer: Parties::of(vec![Party::Exactly(user("door-1"))]), ..Admission::default() };
    assert_eq!(a.incoming(&user("door-1")), Admit::Ring { auto_answer: true });
    assert_eq!(a.incoming(&user("door-2")), Admit::Ring { auto_answer: false });
}

#[test]
fn the_door_opens_for_the_named_parties_in_the_named_direction_only() {
    let residents = Parties::of(vec![Party::Exactly(user("alice")), Party::Exactly(user("bob"))]);
    let a = Admission { door_openers_called: residents, ..Admission::default() };
    assert!(a.may_open(&user("alice"), Direction::CallOut), "the doorbell called alice: she may open");
    assert!(!a.may_open(&user("alice"), Direction::CallIn), "alice calling in may not");
    assert!(!a.may_open(&user("mallory"), Direction::CallOut));
}

#[test]
fn every_user_never_means_a_phone_number_and_broad_lists_are_told_apart() {
    assert!(!Parties::any_user().contains(&phone("+4930123456")));
    assert!(Parties::any_user().is_broad());
    assert!(Parties::of(vec![Party::NumberPrefix("+49".into())]).is_broad());
    assert!(!Parties::of(vec![Party::Exactly(user("a"))]).is_broad());
    assert!(Parties::nobody().is_empty() && !Parties::nobody().is_broad());
}

#[test]
fn parties_are_read_as_written_in_the_config() {
    assert_eq!(Party::parse("any-user", None), Ok(Party::AnyUser));
    assert_eq!(Party::parse(" Alice ", None), Ok(Party::Exactly(user("alice"))));
    assert_eq!(Party::parse("030 1234567", Some("49")), Ok(Party::Exactly(phone("+49301234567"))));
    assert_eq!(Party::parse("+4930*", None), Ok(Party::NumberPrefix("+4930".into())));
    for bad in ["4930*", "+*", "+49a*", "not valid!", "", "+1234567890123456*"] {
        assert!(Party::parse(bad, None).is_err(), "{bad:?}");
    }
}
