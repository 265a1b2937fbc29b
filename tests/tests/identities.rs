//! Identities the servers vouch for, tried with forged ones: SIPp scenarios sent through Kamailio, each stating the
//! answer it requires (SIPp exits 0 only when every step happened as written), and the appliance checked through
//! its API (nothing rang). `stack.rs` covers REGISTER with another user's credential (baresip).
//! - INVITE, MESSAGE and INFO whose From names another user than the credential: 403 after the challenge (an
//!   honest MESSAGE with the same credential is delivered: the credential itself is good);
//! - from the trunk: a MESSAGE, a call claiming a user's identity, and a call through to another phone number are
//!   refused (the trunk only places inbound calls from phone numbers);
//! - calls to phone numbers only for the users `PSTN_USERS` names (toll fraud): the trunk never sees the others;
//! - a user sending requests too fast gets 503 with Retry-After past the limit;
//! - (the firmware) a call from our user's name in another SIP domain is refused (603) without ringing; a group
//!   invitation asking to ring 600 s rings at most the appliance's bound (60 s and a 5 s grace).

mod common;

use std::time::Duration;

use callbox::calling::{CallState, Identifier};
use callbox::client::{CallClient, EventStream};
use callbox_tests::sipp::{scenario, Sipp, SippOptions};
use callbox_tests::{BaresipEvent, BaresipOptions, Stack, StackOptions};
use common::*;

/// The identity the attacker claims.
const VICTIM: &str = "resident";
/// The attacker's own, valid account.
const ATTACKER: &str = "mallory";

/// A request sent by SIPp: `method` with `cseq` and Via `branch`, From the URI given, to `to_user`, an optional
/// body (content type and text), more header lines in `extra` (e.g. SIPp's `[authentication ...]`).
fn request(
    method: &str,
    cseq: u32,
    branch: &str,
    from: &str,
    to_user: &str,
    extra: &str,
    body: Option<(&str, &str)>,
) -> String {
    let (content_type, text) = match body {
        Some((ct, text)) => (format!("Content-Type: {ct}\n"), text),
        None => (String::new(), ""),
    };
    // The Contact names the same user as the From (Janus reports a MESSAGE's sender from it).
    let contact_user = from.trim_start_matches("sip:").split('@').next().unwrap_or("caller");
    format!(
        "<send retrans=\"500\">\n<![CDATA[\n{method} sip:{to_user}@callbox.test SIP/2.0\n\
         Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}\n\
         From: <{from}>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:{to_user}@callbox.test>\n\
         Call-ID: [call_id]\nCSeq: {cseq} {method}\nContact: <sip:{contact_user}@[local_ip]:[local_port]>\n\
         Max-Forwards: 70\n{extra}{content_type}Content-Length: [len]\n\n{text}\n]]>\n</send>\n"
    )
}

/// The ACK of a failed INVITE (CSeq `cseq`, the INVITE's `branch`, the To of the final answer).
fn ack(cseq: u32, branch: &str, from: &str, to_user: &str) -> String {
    request("ACK", cseq, branch, from, to_user, "", None)
        .replace("<send retrans=\"500\">", "<send>")
        .replace(&format!("To: <sip:{to_user}@callbox.test>"), "[last_To:]")
}

const OFFER: &str = "v=0
o=sipp 1 1 IN IP[local_ip_type] [media_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 111
a=rtpmap:111 opus/48000/2
a=sendrecv
";

/// `method` from `from` to `to_user`: challenged, sent again with `creds`, and answered `status` (an INVITE's
/// failures ACKed).
fn challenged(method: &str, from: &str, to_user: &str, creds: &(String, String), status: u16) -> String {
    let body = match method {
        "INVITE" => Some(("application/sdp", OFFER)),
        "INFO" => Some(("application/dtmf-relay", "Signal=5\nDuration=160")),
        "MESSAGE" => Some(("text/plain", "hello")),
        _ => None,
    };
    challenged_with(method, from, to_user, creds, status, body)
}

/// [`challenged`] with the body given.
fn challenged_with(
    method: &str,
    from: &str,
    to_user: &str,
    creds: &(String, String),
    status: u16,
    body: Option<(&str, &str)>,
) -> String {
    let auth = format!("[authentication username={} password={}]\n", creds.0, creds.1);
    let mut steps = request(method, 1, "z9hG4bK-a-[call_number]", from, to_user, "", body);
    steps += "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"407\" auth=\"true\"/>\n";
    if method == "INVITE" {
        steps += &ack(1, "z9hG4bK-a-[call_number]", from, to_user);
    }
    steps += &request(method, 2, "z9hG4bK-b-[call_number]", from, to_user, &auth, body);
    // Janus's sip plugin answers an INVITE 180 by itself before the appliance decides.
    steps += &format!(
        "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"180\" optional=\"true\"/>\n\
         <recv response=\"{status}\"/>\n"
    );
    if method == "INVITE" && status >= 300 {
        steps += &ack(2, "z9hG4bK-b-[call_number]", from, to_user);
    }
    steps
}

/// Runs `steps` in SIPp (from the trunk's address or a port of its own) through Kamailio, to the end.
async fn run(stack: &Stack, name: &str, steps: &str, as_trunk: bool) {
    let sipp = Sipp::start(
        stack,
        SippOptions {
            name: name.into(),
            scenario: scenario(name, steps),
            files: Vec::new(),
            as_trunk,
            remote: Some(stack.kamailio_addr()),
        },
    )
    .expect("SIPp");
    // SIPp itself ends a scenario whose INVITE was answered 180 then failed some 32 s later (it keeps the
    // transaction for the final answer's retransmissions): a bound above that.
    if let Err(e) = sipp.wait(Duration::from_secs(60)).await {
        stack.dump_logs();
        panic!("scenario {name}: {e}");
    }
}

fn credentials(stack: &Stack, user: &str) -> (String, String) {
    let c = stack.sip_credentials(user, Duration::from_secs(600));
    (c.username, c.password.expose().to_string())
}

/// Nothing rings at `door` for a while (what was refused never reached it).
async fn nothing_rings(door: &CallClient, events: &mut EventStream, what: &str) {
    let rang = tokio::time::timeout(Duration::from_secs(2), door.next_incoming_call(events)).await;
    if let Ok(Some(incoming)) = rang {
        panic!("{what}: the door rang, from {:?}", incoming.from());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_from_another_users_identity_are_refused_after_authentication() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-id").await;
    let mut events = door.events();
    let creds = credentials(&stack, ATTACKER);
    let forged = format!("sip:{VICTIM}@callbox.test");
    let honest = format!("sip:{ATTACKER}@callbox.test");
    for method in ["INVITE", "MESSAGE", "INFO"] {
        let steps = challenged(method, &forged, "door-id", &creds, 403);
        run(&stack, &format!("forged-{}", method.to_lowercase()), &steps, false).await;
    }
    // The same credential with its own identity is delivered: the 403s above are the forged From's.
    run(&stack, "honest-message", &challenged("MESSAGE", &honest, "door-id", &creds, 200), false).await;
    nothing_rings(&door, &mut events, "forged INVITE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trunk_only_places_inbound_calls_from_phone_numbers() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-tr").await;
    let mut events = door.events();
    let number = "sip:+15550001111@[local_ip]:[local_port]";
    let refused = |method: &str, from: &str, to: &str, body: Option<(&str, &str)>| {
        let mut steps = request(method, 1, "z9hG4bK-t-[call_number]", from, to, "", body);
        steps += "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"403\"/>\n";
        if method == "INVITE" {
            steps += &ack(1, "z9hG4bK-t-[call_number]", from, to);
        }
        steps
    };
    let sdp = Some(("application/sdp", OFFER));
    let cases = [
        ("trunk-message", refused("MESSAGE", number, "door-tr", Some(("text/plain", "{\"invite\":1}")))),
        ("trunk-as-user", refused("INVITE", &format!("sip:{VICTIM}@callbox.test"), "door-tr", sdp)),
        ("trunk-as-name", refused("INVITE", "sip:resident@[local_ip]:[local_port]", "door-tr", sdp)),
        ("trunk-transit", refused("INVITE", number, "+15550002222", sdp)),
    ];
    for (name, steps) in cases {
        run(&stack, name, &steps, true).await;
    }
    nothing_rings(&door, &mut events, "a refused call from the trunk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_users_allowed_reach_the_trunk() {
    let opts = StackOptions { pstn_users: "^door-tf-ok$".into(), ..StackOptions::default() };
    let stack = Stack::start(opts).await.expect("stack");
    let trunk = stack.start_baresip(BaresipOptions::pstn_trunk("+15550004444")).await.expect("the trunk");
    let number = Identifier::parse("+15550004444", None).expect("a phone number");

    let denied = appliance(&stack, "door-tf-no").await;
    let call = denied.call(std::slice::from_ref(&number)).expect("call");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Disconnected).await;
    assert!(
        trunk.wait_for(BaresipEvent::CallEstablished, Duration::from_secs(2)).await.is_err(),
        "a user not allowed to call numbers reached the trunk (it answers every call)"
    );

    let allowed = appliance(&stack, "door-tf-ok").await;
    let call = allowed.call(std::slice::from_ref(&number)).expect("call");
    trunk.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the allowed user's call reaches the trunk");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    call.hang_up().await.expect("hang up");
    trunk.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("closed at the trunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_sending_too_fast_is_told_to_wait() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let creds = credentials(&stack, ATTACKER);
    let from = format!("sip:{ATTACKER}@callbox.test");
    let auth = format!("[authentication username={} password={}]\n", creds.0, creds.1);
    let message = |cseq: u32, extra: &str| {
        let branch = format!("z9hG4bK-r{cseq}-[call_number]");
        request("MESSAGE", cseq, &branch, &from, "nobody-here", extra, Some(("text/plain", "hi")))
    };
    // One challenge; the next requests reuse its nonce. The first 30 in the window reach the location lookup
    // (404: nobody is registered); the 31st is refused with Retry-After.
    let mut steps = message(1, "") + "<recv response=\"407\" auth=\"true\"/>\n";
    for cseq in 2..=31 {
        steps += &message(cseq, &auth);
        steps += "<recv response=\"404\"/>\n";
    }
    steps += &message(32, &auth);
    steps += "<recv response=\"503\">\n<action><ereg regexp=\"Retry-After: 10\" search_in=\"msg\" check_it=\"true\" \
              assign_to=\"1\"/></action>\n</recv>\n<Reference variables=\"1\"/>\n";
    run(&stack, "rate-limit", &steps, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_of_another_domain_is_refused_by_the_appliance_without_ringing() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-dom").await;
    let mut events = door.events();
    let creds = credentials(&stack, ATTACKER);
    // Kamailio checks the user part against the credential; the domain is the appliance's to judge: not ours.
    let steps = challenged("INVITE", &format!("sip:{ATTACKER}@elsewhere.test"), "door-dom", &creds, 603);
    run(&stack, "other-domain", &steps, false).await;
    nothing_rings(&door, &mut events, "a caller of another domain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_asking_to_ring_600_s_rings_at_most_the_appliances_bound() {
    use callbox::calling::invitation::{encode, GroupCallId, GroupMessage, Invitation, CONTENT_TYPE};
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-inv").await;
    let mut events = door.events();
    let invitation = Invitation {
        call_id: GroupCallId::new("mallory-long").expect("call id"),
        room: 4242,
        pin: callbox::calling::Secret::new("pin-of-the-room"),
        server: String::new(),
        caller: user(ATTACKER),
        caller_display_name: None,
        video: true,
        ring_secs: 600,
        escalate: false,
    };
    let body = encode(&GroupMessage::Invite(invitation)).expect("encode");
    let creds = credentials(&stack, ATTACKER);
    let from = format!("sip:{ATTACKER}@callbox.test");
    let steps = challenged_with("MESSAGE", &from, "door-inv", &creds, 200, Some((CONTENT_TYPE, &body)));
    run(&stack, "long-invitation", &steps, false).await;
    let incoming = next_incoming(&door, &mut events).await;
    assert_eq!(incoming.from(), &user(ATTACKER));
    let rang = std::time::Instant::now();
    let call = incoming.call().clone();
    let mut call_events = call.events();
    // The bound is 65 s; 120 s leaves room for a slow machine and is still far from the 600 s asked for.
    if let Err(e) = call.wait_state(&mut call_events, |s| s == CallState::Disconnected, Duration::from_secs(120)).await
    {
        panic!("the invitation still rings after 120 s ({e}): it took over the appliance");
    }
    println!("the 600 s invitation stopped ringing after {:.1} s", rang.elapsed().as_secs_f64());
}
