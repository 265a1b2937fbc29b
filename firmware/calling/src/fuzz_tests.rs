//! Fuzz targets of the calling core's parsers of remote input (`callbox-fuzz`): group invitations (SIP MESSAGE
//! bodies), access tokens (JWT and their claims), peer state INFO bodies, identifiers and admission parties (from
//! SIP URIs and the config), publisher display names (from the videoroom). Each must return an error, never panic,
//! whatever it is given; where a document decodes, encoding it again must decode to the same.

use callbox_fuzz::fuzz;

use crate::admission::Party;
use crate::identifier::Identifier;
use crate::invitation::{decode, encode};
use crate::publisher_display::PublisherDisplay;
use crate::token::{AccessToken, Claims};

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\\u0000",
];

#[test]
fn fuzz_group_invitations() {
    let seeds: &[&[u8]] = &[
        br#"{"version":1,"type":"invite","call_id":"door-42","room":4242,"pin":"1234","server":"","caller":"door","video":true,"ring_secs":45}"#,
        br#"{"version":1,"type":"invite","call_id":"a.b-c","room":9007199254740991,"pin":"p","server":"wss://j","caller":"+15551234567","caller_display_name":"Door","video":false,"ring_secs":600,"escalate":true}"#,
        br#"{"version":1,"type":"cancel","call_id":"door-42"}"#,
        br#"{"version":1,"type":"decline","call_id":"door-42","code":486}"#,
        br#"{"version":2,"type":"invite"}"#,
    ];
    let dict: &[&[u8]] =
        &[b"\"invite\"", b"\"cancel\"", b"\"decline\"", b"\"room\":", b"\"ring_secs\":", b"\"version\":"];
    fuzz("calling::invitation", seeds, &[dict, JSON_TOKENS].concat(), |input| {
        if let Ok(message) = decode(&text(input)) {
            let again = encode(&message).expect("a decoded message encodes");
            assert_eq!(decode(&again).expect("and decodes again"), message);
        }
    });
}

#[test]
fn fuzz_access_tokens() {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let claims = br#"{"sub":"door","exp":1700000600,"iat":1700000000,"grants":{"janus":{"token":"t","url":"wss://j"},"sip":{"uri":"sip:door@d","username":"1:door","password":"p","realm":"d","proxy":"sip:127.0.0.1"}}}"#;
    let seeds: &[&[u8]] = &[claims, br#"{"sub":"a","exp":9}"#, br#"{"exp":-1,"grants":[]}"#];
    fuzz("calling::token claims", seeds, JSON_TOKENS, |input| {
        // The claims as they come out of a JWT's payload...
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) {
            let _ = Claims::from_json(value);
        }
        // ...and the whole token, with the input as its payload.
        let jwt = format!("{}.{}.c2ln", b64(br#"{"alg":"HS256"}"#), b64(input));
        if let Ok(token) = AccessToken::parse(&jwt) {
            let _ = (token.user_id(), token.janus(), token.sip(), token.check_fresh(1_700_000_300));
        }
    });
    fuzz(
        "calling::token raw",
        &[b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwiZXhwIjo5fQ.c2ln", b"a.b.c", b"..."],
        &[b".", b"eyJ", b"="],
        |input| {
            let _ = AccessToken::parse(&text(input));
        },
    );
}

#[test]
fn fuzz_state_info_bodies() {
    let seeds: &[&[u8]] = &[br#"{"muted":true,"video_on":false}"#, br#"{"muted":false}"#, b"{}"];
    fuzz("calling::state_info", seeds, JSON_TOKENS, |input| {
        let _ = crate::state_info::decode(&text(input));
    });
}

#[test]
fn fuzz_identifiers_and_parties() {
    let seeds: &[&[u8]] = &[
        b"alice",
        b"+1 (555) 123-4567",
        b"sip:alice@callbox.test",
        b"sip:+15551234567@127.0.0.1:5080;user=phone",
        b"00441234567890",
        b"group:residents",
        b"+1555*",
        b"any-user",
    ];
    let dict: &[&[u8]] = &[b"sip:", b"sips:", b"@", b":", b";", b"+", b"*", b"%3A", b"group:", b"tel:"];
    fuzz("calling::identifier", seeds, dict, |input| {
        let s = text(input);
        let _ = Identifier::parse(&s, None);
        if let Ok(id) = Identifier::parse(&s, Some("1")) {
            let _ = id.to_string();
        }
        let _ = Identifier::sip_uri_in_domain(&s, "callbox.test");
        let _ = Party::parse(&s, Some("44"));
    });
}

#[test]
fn fuzz_publisher_displays() {
    let seeds: &[&[u8]] = &[b"door|Front door|camera", b"monitor||screen", b"x", b"||||"];
    fuzz("calling::publisher_display", seeds, &[b"|", b"camera", b"screen", b"%7C"], |input| {
        if let Ok(display) = PublisherDisplay::decode(&text(input)) {
            let _ = display.encode();
        }
    });
}
