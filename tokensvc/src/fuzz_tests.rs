//! Fuzz targets of the token service's parsers of remote and on-disk input (`callbox-fuzz`): one connection's
//! request bytes, delivered in pieces, through the whole of `serve` (head and body framing, routing, the lockout
//! count, the answer), and the service's JSON configuration. Whatever comes in, the connection gets exactly one
//! well-formed HTTP answer with a status the service documents, a token only for the right device key, and never
//! an echo of a device key; the lockout table stays within its bound; a bad config is an error, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use callbox_calling::Secret;
use callbox_fuzz::fuzz;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ServiceConfig;
use crate::server::{lock_count, serve, Limits, Shared};
use crate::token::Secrets;

const KEY: &str = "device-key-of-the-fuzzed-door";
/// The lockout table's bound here; the requests come from twice as many sources.
const MAX_SOURCES: usize = 8;

/// One connection: hands out the request in pieces of `piece` bytes, then end of stream; keeps what is written.
struct Connection {
    input: Vec<u8>,
    at: usize,
    piece: usize,
    output: Vec<u8>,
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = self.piece.min(self.input.len() - self.at).min(buf.remaining());
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn service() -> Shared {
    let mut c = ServiceConfig::new(
        Secrets { jwt_secret: Secret::new("j"), janus_secret: Secret::new("janus"), sip_secret: Secret::new("sip") },
        "callbox.test",
        "sip:127.0.0.1:5060",
    );
    c.devices.push((Secret::new(KEY), "door".into()));
    // Lockouts from the second wrong key, and a table smaller than the fuzzer's sources: both are reached.
    let mut limits = Limits::default();
    limits.lockout.lock_after = 2;
    limits.lockout.max_sources = MAX_SOURCES;
    Shared::new(c, limits)
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Checks the one answer written to a connection; returns its status.
fn check_answer(input: &[u8], output: &[u8]) -> u16 {
    let text = std::str::from_utf8(output).expect("the answer is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("the answer has a head and a body");
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    assert!([200, 400, 401, 404, 405, 408, 413, 429, 431].contains(&status), "undocumented status {status}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("a Content-Length");
    assert_eq!(length, body.len(), "Content-Length matches the body");
    assert!(!find(output, KEY.as_bytes()), "the answer carries the device key");
    if status == 200 {
        assert!(find(input, KEY.as_bytes()), "a token without the device key");
        assert!(body.contains("\"token\""), "200 without a token: {body}");
    }
    status
}

#[test]
fn fuzz_token_requests() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let shared = service();
    let post =
        format!("POST /v1/token HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 0\r\n\r\n");
    let seeds: Vec<Vec<u8>> = vec![
        post.clone().into_bytes(),
        format!("POST /v1/token?x=1 HTTP/1.0\r\nauthorization: bearer  {KEY} \r\ncontent-length: 4\r\n\r\n{{}}\r\n")
            .into_bytes(),
        b"POST /v1/token HTTP/1.1\r\nAuthorization: Bearer wrong-key\r\n\r\n".to_vec(),
        b"GET /v1/token HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /other HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /v1/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"POST /v1/token HTTP/1.1\r\nContent-Length: 99999\r\n\r\n".to_vec(),
        b"POST /v1/token HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
        b"POST /v1/token HTTP/2\r\n\r\n".to_vec(),
        b"POST  /v1/token HTTP/1.1\r\n\r\n".to_vec(),
    ];
    let seeds: Vec<&[u8]> = seeds.iter().map(|s| s.as_slice()).collect();
    let key = format!("Bearer {KEY}");
    let dict: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b": ",
        b"POST ",
        b"/v1/token",
        b" HTTP/1.1",
        b"Authorization: ",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked",
        key.as_bytes(),
        b"Bearer ",
        b"18446744073709551616",
        b"-1",
        b"\xff\xfe",
    ];
    let mut answers = [0u64; 6];
    fuzz("tokensvc::request", &seeds, dict, |input| {
        // Pieces of 1 to 97 bytes, and one of 16 sources, both from the input (a run is repeatable).
        let sum = input.iter().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(*b)));
        let mut conn = Connection { input: input.to_vec(), at: 0, piece: 1 + sum % 97, output: Vec::new() };
        let source = ((sum >> 8) % (2 * MAX_SOURCES)) as u8;
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, source)), 40000);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        runtime.block_on(serve(&mut conn, peer, &shared, deadline));
        let status = check_answer(input, &conn.output);
        answers[match status {
            200 => 0,
            400 => 1,
            401 => 2,
            429 => 3,
            404 | 405 => 4,
            _ => 5,
        }] += 1;
        assert!(lock_count(&shared) <= MAX_SOURCES, "the lockout table outgrew its bound");
    });
    println!(
        "tokensvc::request answers: 200 {}, 400 {}, 401 {}, 429 {}, 404/405 {}, other {}",
        answers[0], answers[1], answers[2], answers[3], answers[4], answers[5]
    );
    // The seeds alone reach a token and each refusal: the fuzzer starts from every branch of the parser.
    assert!(answers[0] > 0 && answers[1] > 0 && answers[2] > 0 && answers[4] > 0, "{answers:?}");
}

#[test]
fn fuzz_service_config() {
    let seeds: &[&[u8]] = &[
        br#"{"jwt_secret":"0123456789abcdef0123456789abcdef","janus_secret":"0123456789abcdef0123456789abcdef","sip_secret":"0123456789abcdef0123456789abcdef","realm":"callbox.test","sip_proxy":"sip:127.0.0.1:5060","ttl_secs":600,"devices":{"0123456789abcdef0123456789abcdef":"alice","fedcba9876543210fedcba9876543210":{"user":"bob","rooms":true}},"room_admin_key":"0123456789abcdef0123456789abcdef","plugins":["janus.plugin.sip"]}"#,
        br#"{"jwt_secret":"x","janus_secret":"x","sip_secret":"x","realm":"r","sip_proxy":"p"}"#,
        br#"{"devices":[]}"#,
    ];
    let dict: &[&[u8]] = &[b"{", b"}", b"\"", b":", b",", b"null", b"true", b"-1", b"\"rooms\":", b"\"user\":"];
    fuzz("tokensvc::config", seeds, dict, |input| {
        let _ = ServiceConfig::parse(&String::from_utf8_lossy(input));
    });
}
