//! Interoperation with foreign SIP endpoints: baresip as the PSTN trunk that Kamailio routes E.164 numbers to, and
//! baresip as a registered user's SIP phone, calling and called by a callbox appliance.

mod common;

use callbox::calling::{CallState, Event, Identifier, ParticipantState};
use callbox_tests::{BaresipEvent, BaresipOptions, Stack, StackOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phone_number_is_routed_to_the_pstn_trunk_and_answered_with_audio() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let trunk = stack.start_baresip(BaresipOptions::pstn_trunk("+15551234567")).await.expect("trunk");
    let a = appliance(&stack, "door-pstn").await;
    let number = Identifier::parse("+1 (555) 123-4567", None).expect("a phone number");
    let call = a.call(std::slice::from_ref(&number)).expect("call");
    let mut events = call.events();
    let mut seen = Vec::new();
    // Record every state on the way (EarlyMedia when the trunk sends 183 with SDP).
    let connected = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::CallStateChanged { state, .. }) = events.next_event().await {
                seen.push(state);
                if matches!(state, CallState::Connected | CallState::Disconnected) {
                    return state;
                }
            }
        }
    })
    .await
    .expect("the trunk answers within the bound");
    assert_eq!(connected, CallState::Connected, "states {seen:?}, end reason {:?}", call.end_reason());
    trunk.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("the trunk sees the call established");
    assert_eq!(call.remote_participants()[0].identifier(), Some(number));
    assert_eq!(call.remote_participants()[0].state(), ParticipantState::Connected);
    assert_audio_level(&call, "the caller", -40.0).await;
    call.hang_up().await.expect("hang up");
    trunk.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("the trunk sees the hang-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_sip_phone_calls_the_appliance_and_is_called_by_it() {
    let stack = Stack::start(StackOptions::default()).await.expect("stack");
    let carol = stack.start_baresip(BaresipOptions::registered_user("carol")).await.expect("carol's phone");
    let a = appliance(&stack, "door-x").await;
    let mut a_events = a.events();

    // carol's phone calls the appliance.
    carol.dial(&format!("sip:door-x@{}", stack.sip_domain())).await.expect("dial");
    let incoming = next_incoming(&a, &mut a_events).await;
    assert_eq!(incoming.from(), &user("carol"));
    let call = incoming.accept().await.expect("accept");
    let mut call_events = call.events();
    wait_state(&call, &mut call_events, CallState::Connected).await;
    carol.wait_for(BaresipEvent::CallEstablished, WAIT).await.expect("carol's phone connected");
    assert_audio_level(&call, "the appliance", -40.0).await;
    carol.hangup().await.expect("carol hangs up");
    wait_state(&call, &mut call_events, CallState::Disconnected).await;
    assert_eq!(call.end_reason().map(|r| r.code), Some(0));

    // The appliance calls carol; her phone answers.
    let call = a.call(&[user("carol")]).expect("call carol");
    let mut call_events = call.events();
    carol.wait_for(BaresipEvent::CallIncoming, WAIT).await.expect("carol's phone rings");
    wait_state(&call, &mut call_events, CallState::Ringing).await;
    carol.accept().await.expect("carol answers");
    wait_state(&call, &mut call_events, CallState::Connected).await;
    assert_audio_level(&call, "the appliance", -40.0).await;
    call.hang_up().await.expect("hang up");
    carol.wait_for(BaresipEvent::CallClosed, WAIT).await.expect("carol sees the hang-up");
}
