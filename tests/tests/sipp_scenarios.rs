//! SIPp scenarios against an appliance: SIP that callbox did not write and that its usual peers never send. Each
//! scenario states the responses it requires (SIPp exits 0 only when every step happened as written: right codes,
//! the hold direction in the appliance's SDP) and the appliance's side is checked through its API; after each, the
//! appliance still takes an ordinary call (it neither hung nor crashed). The SIPp end calls in from the trunk
//! address, which Kamailio trusts; its RTP is an Opus tone replayed from a pcap.
//! - late offer: an INVITE without SDP is answered with our offer in the 200 OK, the caller's answer in the ACK;
//! - hold and resume from the far end (re-INVITE sendonly, then sendrecv): answered recvonly, then sendrecv;
//! - INFO with a malformed DTMF body and INFO of an unknown content type: 200, no digit; a valid one still counts;
//! - an in-dialog INFO whose From is not a party of the dialog: 403 from Kamailio, the digit never arrives;
//! - CANCEL while ringing: 487 for the INVITE, the appliance's call ends;
//! - an UPDATE refreshing the session: 200, and the call goes on;
//! - (the appliance calling) 183 without SDP then 200: Ringing, not early media, then connected with audio.

mod common;

use std::time::Duration;

use callbox::calling::{CallState, Event, Identifier};
use callbox::client::CallClient;
use callbox_tests::compat::{Direction, Verified};
use callbox_tests::sipp::{
    opus_tone_pcap, scenario, uas_response, Sipp, SippOptions, TRUNK_ANSWER_SDP, UAS_BYE_ANSWERED,
};
use callbox_tests::{Stack, StackOptions};
use common::*;

const ENDPOINT: &str = "SIPp 3.6 (PSTN trunk, scripted)";

/// The INVITE's offer (Opus and telephone-event, what a gateway speaking Opus offers).
const OFFER: &str = "v=0
o=sipp 1 1 IN IP[local_ip_type] [media_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 111 101
a=rtpmap:111 opus/48000/2
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
";

/// The headers of a request from the trunk to `door` (`cseq` and method given), the dialog's route and tags; a fresh
/// Via branch per request.
fn request(method: &str, cseq: u32, in_dialog: bool, sdp: Option<&str>) -> String {
    request_on(method, cseq, in_dialog, sdp, "[branch]")
}

/// `request` with the Via `branch` given (a CANCEL and the ACK of a failed INVITE repeat the INVITE's).
fn request_on(method: &str, cseq: u32, in_dialog: bool, sdp: Option<&str>, branch: &str) -> String {
    let (uri, to, route) = if in_dialog {
        ("[next_url]", "To: <sip:[service]@callbox.test>[peer_tag_param]", "[routes]\n")
    } else {
        ("sip:[service]@callbox.test", "To: <sip:[service]@callbox.test>", "")
    };
    let body = sdp.unwrap_or("");
    let content_type = if sdp.is_some() { "Content-Type: application/sdp\n" } else { "" };
    format!(
        "<send{retrans}>\n<![CDATA[\n{method} {uri} SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}\n\
         From: <sip:+15550001111@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n{to}\n\
         Call-ID: [call_id]\nCSeq: {cseq} {method}\nContact: <sip:+15550001111@[local_ip]:[local_port]>\n\
         Max-Forwards: 70\n{route}{content_type}Content-Length: [len]\n\n{body}\n]]>\n</send>\n",
        retrans = if method == "ACK" { "" } else { " retrans=\"500\"" },
    )
}

/// Responses the trunk may see before the final one.
const PROVISIONAL: &str = "<recv response=\"100\" optional=\"true\"/>\n<recv response=\"180\" optional=\"true\"/>\n\
                           <recv response=\"183\" optional=\"true\"/>\n";

/// INVITE (with `offer` or none), the 200 OK (its Record-Route kept for the dialog), and the ACK (carrying `ack_sdp`).
fn set_up(offer: Option<&str>, ack_sdp: Option<&str>) -> String {
    format!(
        "{}{PROVISIONAL}<recv response=\"200\" rrs=\"true\"/>\n{}<nop><action><exec play_pcap_audio=\"tone.pcap\"/></action></nop>\n",
        request("INVITE", 1, false, offer),
        request("ACK", 1, true, ack_sdp),
    )
}

fn bye(cseq: u32) -> String {
    format!("{}<recv response=\"200\"/>\n", request("BYE", cseq, true, None))
}

fn start_uac(stack: &Stack, name: &str, steps: &str, door: &str) -> Sipp {
    let xml = scenario(name, steps).replace("[service]", door);
    Sipp::start(
        stack,
        SippOptions {
            name: name.into(),
            scenario: xml,
            files: vec![("tone.pcap".into(), opus_tone_pcap(1000.0, 20, 111).expect("pcap"))],
            as_trunk: true,
            remote: Some(stack.kamailio_addr()),
        },
    )
    .expect("SIPp")
}

/// The appliance answers whatever rings next; returns its call.
async fn answer_next(door: &CallClient, events: &mut callbox::client::EventStream) -> callbox::client::Call {
    let incoming = next_incoming(door, events).await;
    assert_eq!(incoming.from(), &Identifier::parse("+15550001111", None).expect("a number"));
    incoming.accept().await.expect("accept")
}

/// The appliance answers whatever rings next; returns the digits it received in that call, once the call ended.
async fn digits_of_the_next_call(door: &CallClient, events: &mut callbox::client::EventStream) -> String {
    let call = answer_next(door, events).await;
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    let mut digits = String::new();
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match call_events.next_event().await {
                Some(Event::DtmfReceived { digit, .. }) => digits.push(digit),
                Some(Event::CallStateChanged { state: CallState::Disconnected, .. }) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the call did not end");
    digits
}

/// After a scenario the appliance still rings and connects: the SIPp-free path of a normal call to another
/// appliance.
async fn still_works(stack: &Stack, door: &CallClient, name: &str) {
    let other = appliance(stack, &format!("{name}-check")).await;
    let mut other_events = other.events();
    let call = door.call(&[user(&format!("{name}-check"))]).expect("call");
    let incoming = next_incoming(&other, &mut other_events).await;
    let _answered = incoming.accept().await.expect("accept");
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    call.hang_up().await.expect("hang up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_offer_invite_is_answered_with_our_offer_and_carries_audio() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-lo").await;
    let mut door_events = door.events();
    let answer = OFFER.replace("o=sipp 1 1", "o=sipp 1 2");
    let steps = format!("{}<pause milliseconds=\"3000\"/>\n{}", set_up(None, Some(&answer)), bye(2));
    let sipp = start_uac(&stack, "late-offer", &steps, "door-lo");
    let call = answer_next(&door, &mut door_events).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    assert_audio_level(&call, "the appliance", -40.0).await;
    wait_state(&call, &mut events, CallState::Disconnected).await;
    sipp.wait(WAIT).await.expect("the scenario: INVITE without SDP, 200 with our offer, ACK with the answer, BYE");
    still_works(&stack, &door, "door-lo").await;
    Verified::new(ENDPOINT, Direction::ItCallsTheAppliance, "sipp_scenarios::a_late_offer_invite")
        .audio("trunk → appliance, Opus, offerless INVITE (our offer in the 200 OK)")
        .record();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_far_end_holds_and_resumes_with_re_invites() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-h").await;
    let mut door_events = door.events();
    // Each re-INVITE's 200 OK must answer its direction: recvonly to sendonly; to sendrecv, no hold direction at all
    // (sendrecv is also the default when no direction attribute is given).
    let reinvite = |cseq: u32, direction: &str, check: &str| {
        let sdp =
            OFFER.replace("a=sendrecv", &format!("a={direction}")).replace("o=sipp 1 1", &format!("o=sipp 1 {cseq}"));
        format!(
            "{}<recv response=\"100\" optional=\"true\"/>\n<recv response=\"200\">\n<action>\n\
             <ereg {check} search_in=\"body\" assign_to=\"dir{cseq}\"/>\n</action>\n</recv>\n{}",
            request("INVITE", cseq, true, Some(&sdp)),
            request("ACK", cseq, true, None),
        )
    };
    let steps = format!(
        "{}<pause milliseconds=\"2000\"/>\n{}<pause milliseconds=\"2000\"/>\n{}<pause milliseconds=\"1500\"/>\n{}",
        set_up(Some(OFFER), None),
        reinvite(2, "sendonly", "regexp=\"a=recvonly\" check_it=\"true\""),
        reinvite(3, "sendrecv", "regexp=\"a=(recvonly|sendonly|inactive)\" check_it_inverse=\"true\""),
        bye(4) + "<Reference variables=\"dir2,dir3\"/>\n"
    );
    let sipp = start_uac(&stack, "far-end-hold", &steps, "door-h");
    let call = answer_next(&door, &mut door_events).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    wait_state(&call, &mut events, CallState::RemoteHold).await;
    wait_state(&call, &mut events, CallState::Connected).await;
    assert_audio_level(&call, "the appliance after the resume", -40.0).await;
    wait_state(&call, &mut events, CallState::Disconnected).await;
    sipp.wait(WAIT).await.expect("the scenario: hold answered recvonly, resume answered sendrecv, BYE");
    still_works(&stack, &door, "door-h").await;
    Verified::new(ENDPOINT, Direction::ItCallsTheAppliance, "sipp_scenarios::the_far_end_holds_and_resumes")
        .audio("trunk → appliance, Opus")
        .hold("from the far end: re-INVITE sendonly answered recvonly (RemoteHold), sendrecv resumes")
        .record();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_and_unknown_info_bodies_are_refused_quietly_and_a_good_digit_still_counts() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-i2").await;
    let mut door_events = door.events();
    let info = |cseq: u32, content_type: &str, body: &str| {
        let r = request("INFO", cseq, true, Some(body))
            .replace("Content-Type: application/sdp", &format!("Content-Type: {content_type}"));
        format!("{r}<recv response=\"200\"/>\n")
    };
    let steps = format!(
        "{}<pause milliseconds=\"1000\"/>\n{}{}{}{}<pause milliseconds=\"1500\"/>\n{}",
        set_up(Some(OFFER), None),
        info(2, "application/dtmf-relay", "Signal=\nDuration=abc\n"),
        info(3, "application/dtmf-relay", "\u{1}\u{2}garbage=="),
        info(4, "application/x-unknown-thing", "{\"not\": \"for you\"}"),
        info(5, "application/dtmf-relay", "Signal=7\nDuration=160\n"),
        bye(6)
    );
    let sipp = start_uac(&stack, "bad-info", &steps, "door-i2");
    let digits = digits_of_the_next_call(&door, &mut door_events).await;
    assert_eq!(digits, "7", "only the well-formed digit counts");
    sipp.wait(WAIT).await.expect("the scenario: each INFO answered 200, BYE");
    still_works(&stack, &door, "door-i2").await;
    Verified::new(ENDPOINT, Direction::ItCallsTheAppliance, "sipp_scenarios::malformed_and_unknown_info_bodies")
        .dtmf("SIP INFO dtmf-relay; malformed and unknown INFO bodies ignored (200)")
        .record();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_in_dialog_info_from_someone_else_is_refused_by_kamailio() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-i3").await;
    let mut door_events = door.events();
    let info = |cseq: u32, digit: char, status: u16| {
        let r = request("INFO", cseq, true, Some(&format!("Signal={digit}\nDuration=160\n")))
            .replace("Content-Type: application/sdp", "Content-Type: application/dtmf-relay");
        format!("{r}<recv response=\"{status}\"/>\n")
    };
    // The forged INFO keeps the dialog's tags and route: only its From names another party.
    let forged = info(2, '9', 403)
        .replace("From: <sip:+15550001111@[local_ip]:[local_port]>", "From: <sip:resident@callbox.test>");
    let steps = format!(
        "{}<pause milliseconds=\"1000\"/>\n{forged}{}<pause milliseconds=\"1500\"/>\n{}",
        set_up(Some(OFFER), None),
        info(3, '4', 200),
        bye(4)
    );
    let sipp = start_uac(&stack, "forged-info", &steps, "door-i3");
    let digits = digits_of_the_next_call(&door, &mut door_events).await;
    assert_eq!(digits, "4", "only the digit of the call's own party counts");
    sipp.wait(WAIT).await.expect("the scenario: the forged INFO answered 403, the party's own 200, BYE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_cancelled_while_ringing_ends_at_the_appliance() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-c").await;
    let mut door_events = door.events();
    // The CANCEL and the ACK of the 487 repeat the INVITE's Via branch and CSeq number (RFC 3261 9.1, 17.1.1.3).
    // The CANCEL's 200 and the INVITE's 487 travel separately and may arrive in either order (seen): a late 200 comes
    // after the call and is discarded.
    let branch = "z9hG4bK-cancelled-[call_number]";
    let steps = format!(
        "{}<recv response=\"100\" optional=\"true\"/>\n<recv response=\"180\"/>\n<pause milliseconds=\"1000\"/>\n{}\
         <recv response=\"200\" optional=\"true\"/>\n<recv response=\"487\"/>\n{}",
        request_on("INVITE", 1, false, Some(OFFER), branch),
        request_on("CANCEL", 1, false, None, branch),
        request_on("ACK", 1, false, None, branch).replace("To: <sip:[service]@callbox.test>", "[last_To:]"),
    );
    let sipp = start_uac(&stack, "cancel", &steps, "door-c");
    let incoming = next_incoming(&door, &mut door_events).await;
    let call = incoming.call().clone();
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Disconnected).await;
    sipp.wait(WAIT).await.expect("the scenario: 180, then 200 to the CANCEL and 487 to the INVITE");
    still_works(&stack, &door, "door-c").await;
}

/// The appliance calls the trunk, which rings with 183 without SDP (no early media) before answering.
fn ringing_183() -> String {
    let steps = format!(
        "<recv request=\"INVITE\"/>\n{}<pause milliseconds=\"1500\"/>\n{}<recv request=\"ACK\"/>\n\
         <nop><action><exec play_pcap_audio=\"tone.pcap\"/></action></nop>\n{UAS_BYE_ANSWERED}",
        uas_response("183 Session Progress", None),
        uas_response("200 OK", Some(TRUNK_ANSWER_SDP)),
    );
    scenario("183 without SDP, then 200", &steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_183_without_sdp_rings_and_the_200_connects() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let sipp = Sipp::start(
        &stack,
        SippOptions {
            name: "ringing-183".into(),
            scenario: ringing_183(),
            files: vec![("tone.pcap".into(), opus_tone_pcap(1000.0, 20, 111).expect("pcap"))],
            as_trunk: true,
            remote: None,
        },
    )
    .expect("SIPp");
    let door = appliance(&stack, "door-r").await;
    let call = door.call(&[Identifier::parse("+15551234567", None).expect("a number")]).expect("call");
    let mut events = call.events();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::CallStateChanged { state, .. }) = events.next_event().await {
                seen.push(state);
                if matches!(state, CallState::Connected | CallState::Disconnected) {
                    return;
                }
            }
        }
    })
    .await
    .expect("the call connects");
    assert_eq!(seen.last(), Some(&CallState::Connected), "states {seen:?}");
    assert!(seen.contains(&CallState::Ringing), "a 183 without SDP rings: {seen:?}");
    assert!(!seen.contains(&CallState::EarlyMedia), "no SDP, no early media: {seen:?}");
    assert_audio_level(&call, "the appliance", -40.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.hang_up().await.expect("hang up");
    sipp.wait(WAIT).await.expect("the scenario: 183, 200, ACK, BYE");
    Verified::new(ENDPOINT, Direction::ApplianceCalls, "sipp_scenarios::a_183_without_sdp_rings")
        .early_media("183 without SDP rings (no early media), the 200 connects")
        .record();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_in_the_call_is_answered_and_the_call_goes_on() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let door = appliance(&stack, "door-u").await;
    let mut door_events = door.events();
    // A session refresh by UPDATE (RFC 3311, what session timers send), with the same session description.
    let refresh = OFFER.replace("o=sipp 1 1", "o=sipp 1 2");
    let steps = format!(
        "{}<pause milliseconds=\"1500\"/>\n{}<recv response=\"200\"/>\n<pause milliseconds=\"1500\"/>\n{}",
        set_up(Some(OFFER), None),
        request("UPDATE", 2, true, Some(&refresh)),
        bye(3)
    );
    let sipp = start_uac(&stack, "update", &steps, "door-u");
    let call = answer_next(&door, &mut door_events).await;
    let mut events = call.events();
    wait_state(&call, &mut events, CallState::Connected).await;
    wait_state(&call, &mut events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.code), Some(0), "ended by the far end's BYE, not by the UPDATE");
    sipp.wait(WAIT).await.expect("the scenario: UPDATE answered 200, BYE");
    still_works(&stack, &door, "door-u").await;
}
