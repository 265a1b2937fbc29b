//! Fuzz targets of the firmware's parsers of remote and on-disk input (`callbox-fuzz`): Janus messages and the
//! sip and videoroom plugins' events, SDP as the media code reads it, SIP INFO dtmf-relay bodies, RFC 4733
//! telephone events, RTP payloads into the jitter buffer and the mixer, the token endpoint's HTTP answers, and
//! `callbox.toml` and board profiles. None may panic, whatever it is given.

use std::path::Path;
use std::time::Duration;

use callbox_fuzz::fuzz;

use crate::config::{BoardProfile, Config};
use crate::devices::{AudioFrame, AUDIO_FRAME_SAMPLES};
use crate::media::dtmf::TelephoneEvent;
use crate::media::mixer::Mixer;
use crate::media::playout::{Playout, PlayoutConfig};
use crate::media::sdp;
use crate::signaling::{HandleEvent, Jsep, SipEvent, VideoRoomEvent};

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

const JSON_TOKENS: &[&[u8]] =
    &[b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"true", b"-1", b"1e999", b"\\u0000"];

#[test]
fn fuzz_janus_messages_and_plugin_events() {
    let seeds: &[&[u8]] = &[
        br#"{"janus":"event","session_id":1,"sender":2,"plugindata":{"plugin":"janus.plugin.sip","data":{"sip":"event","call_id":"c1","result":{"event":"incomingcall","username":"sip:door@callbox.test","displayname":"Door","callee":"sip:mon@callbox.test"}}},"jsep":{"type":"offer","sdp":"v=0\r\n"}}"#,
        br#"{"janus":"event","sender":2,"plugindata":{"plugin":"janus.plugin.sip","data":{"sip":"event","result":{"event":"registration_failed","code":403,"reason":"Forbidden"}}}}"#,
        br#"{"janus":"event","sender":2,"plugindata":{"plugin":"janus.plugin.sip","data":{"sip":"event","result":{"event":"info","sender":"sip:a@b","type":"application/dtmf-relay","content":"Signal=5\r\nDuration=160"}}}}"#,
        br#"{"janus":"event","sender":3,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"joined","room":42,"id":7,"publishers":[{"id":8,"display":"door|Door|camera","streams":[{"type":"video","mid":"1","codec":"vp8"}]}]}}}"#,
        br#"{"janus":"event","sender":3,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"updated","room":42,"streams":[{"type":"audio","mid":"0","feed_id":8,"feed_mid":"0"}]}},"jsep":{"type":"offer","sdp":"v=0"}}"#,
        br#"{"janus":"hangup","session_id":1,"sender":2,"reason":"DTLS alert"}"#,
        br#"{"janus":"error","transaction":"t","error":{"code":403,"reason":"Unauthorized request (wrong or missing secret/token)"}}"#,
        br#"{"janus":"success","transaction":"t","data":{"id":1}}"#,
    ];
    let dict: &[&[u8]] = &[
        b"\"janus\":",
        b"\"plugindata\":",
        b"\"data\":",
        b"\"result\":",
        b"\"event\":",
        b"\"videoroom\":",
        b"\"publishers\":",
        b"\"streams\":",
        b"\"jsep\":",
        b"\"incomingcall\"",
        b"\"accepted\"",
        b"\"hangup\"",
        b"\"message\"",
    ];
    fuzz("signaling::janus messages", seeds, &[dict, JSON_TOKENS].concat(), |input| {
        let Some(msg) = crate::signaling::janus::parse_message(input) else { return };
        let kind = msg.get("janus").and_then(|v| v.as_str()).unwrap_or("event").to_owned();
        let jsep = msg.get("jsep").and_then(Jsep::from_json);
        if let Some(data) = msg.get("plugindata").and_then(|p| p.get("data")) {
            let _ = SipEvent::from_plugin_data(data, jsep.clone());
            let _ = VideoRoomEvent::parse(data, jsep);
        }
        let _ = HandleEvent::from_message(&kind, msg);
    });
}

const OFFER: &[u8] = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 101\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\na=ssrc:1234 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=ssrc:5678 cname:x\r\n\
a=inactive\r\n";

#[test]
fn fuzz_sdp_as_the_media_code_reads_it() {
    let dict: &[&[u8]] = &[
        b"\r\nm=",
        b"\r\na=",
        b"a=sendonly",
        b"a=recvonly",
        b"a=inactive",
        b"a=mid:",
        b"a=ssrc:",
        b"a=fmtp:",
        b"profile-level-id=",
        b"packetization-mode=",
        b"m=video 0",
        b"c=IN IP4 0.0.0.0",
    ];
    fuzz("media::sdp", &[OFFER, b"v=0\r\n", b""], dict, |input| {
        let s = text(input);
        let _ = (sdp::holds_us(&s), sdp::has_video(&s), sdp::mid_of(&s, "audio"), sdp::mid_of(&s, "video"));
        let _ = sdp::ssrc_mids(&s);
        let _ = sdp::normalize_offer(&s);
        for line in s.lines().filter(|l| l.starts_with("a=fmtp:")) {
            let _ = sdp::h264_fmtp_usable(line);
        }
        let _ = sdp::h264_fmtp_usable(&s);
    });
}

#[test]
fn fuzz_dtmf_relay_bodies_and_telephone_events() {
    let seeds: &[&[u8]] = &[b"Signal=5\r\nDuration=160\r\n", b"Signal=#\nDuration=250", b"Signal= *", b"Duration=1"];
    fuzz("signaling::dtmf-relay", seeds, &[b"Signal=", b"Duration=", b"\r\n", b"=", b"4294967296"], |input| {
        let _ = crate::signaling::sip::parse_dtmf_relay(&text(input));
    });
    fuzz("media::rfc4733", &[&[5, 0x8a, 0x03, 0x20], &[16, 0, 0, 0, 9], &[]], &[], |input| {
        if let Some(e) = TelephoneEvent::parse(input) {
            let _ = crate::media::dtmf::digit_of(e.code);
        }
    });
}

/// Packets from the input: each 1 + 2 + 4 + n bytes (payload length, sequence number, timestamp, payload).
fn packets(input: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut rest = input;
    while let [len, s0, s1, t0, t1, t2, t3, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        out.push((u16::from_be_bytes([*s0, *s1]), u32::from_be_bytes([*t0, *t1, *t2, *t3]), &tail[..n]));
        rest = &tail[n..];
    }
    out
}

#[test]
fn fuzz_rtp_payloads_into_the_jitter_buffer_and_the_mixer() {
    // An Opus TOC byte and a few frames' worth of bytes, at sequence numbers and timestamps that jump around.
    let seeds: &[&[u8]] = &[
        &[3, 0, 1, 0, 0, 0, 0, 0xf8, 0xff, 0xfe, 3, 0, 2, 0, 0, 3, 0xc0, 0xf8, 0xff, 0xfe],
        &[1, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x40, 0x00, 1, 0, 0, 0, 0, 0, 0, 0x00],
        &[0, 0x80, 0, 0, 0, 0, 0],
    ];
    fuzz("media::playout", seeds, &[&[0xf8, 0xff, 0xfe], &[0xff; 7]], |input| {
        let Ok(mut playout) = Playout::new(PlayoutConfig::default()) else { return };
        let Ok(mut mixer) = Mixer::new(PlayoutConfig::default()) else { return };
        let mut frame: AudioFrame = [0; AUDIO_FRAME_SAMPLES];
        for (i, (seq, ts, payload)) in packets(input).into_iter().enumerate() {
            let arrival = Duration::from_millis(20 * i as u64);
            playout.push(seq, ts, payload, arrival);
            mixer.push(u32::from(seq % 3), seq, ts, payload, arrival);
            let _ = playout.next_frame(arrival, &mut frame);
            let _ = mixer.next_frame(arrival, &mut frame);
        }
        let _ = (playout.stats(), mixer.stats(), mixer.streams());
    });
}

#[test]
fn fuzz_token_endpoint_answers() {
    let seeds: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"token\":\"a.b.c\"}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 500\r\n\r\n",
    ];
    let dict: &[&[u8]] =
        &[b"\r\n", b"\r\n\r\n", b"Content-Length: ", b"Transfer-Encoding: chunked", b"ffffffffffffffff"];
    fuzz("provisioning::http answers", seeds, dict, |input| {
        let _ = crate::provisioning::https::parse_response(input);
        let _ = crate::provisioning::https::decode_chunked(input);
    });
}

#[test]
fn fuzz_config_and_board_files() {
    let config = include_bytes!("../../config/callbox.toml");
    let boards: [&[u8]; 6] = [
        include_bytes!("../../board/pi4.toml"),
        include_bytes!("../../board/pi5.toml"),
        include_bytes!("../../board/cm4.toml"),
        include_bytes!("../../board/pi-zero-2w.toml"),
        include_bytes!("../../board/qemu-virt.toml"),
        include_bytes!("../../board/sim.toml"),
    ];
    let dict: &[&[u8]] = &[b"\n[", b"]\n", b" = ", b"\"", b"'''", b"[[", b"true", b"-1", b"1e400", b"0x", b"#", b"="];
    let path = Path::new("fuzz.toml");
    fuzz("config::callbox.toml", &[config], dict, |input| {
        let _ = Config::parse(&text(input), path);
    });
    fuzz("config::board", &boards, dict, |input| {
        let _ = BoardProfile::parse(&text(input), path);
    });
}
