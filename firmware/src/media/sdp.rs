//! What callbox reads of a session description, from its media sections: whether the far end holds us (the audio
//! direction), whether video was negotiated (a video section with a port), the mid of a kind of section (our own
//! offer's camera, for the room's stream descriptions), and the SSRCs each section announces (a room
//! subscription's streams). Pure functions over the text; anything they do not understand counts as absent.
//!
//! Also the one change made to a far end's offer before it is applied ([`normalize_offer`]): one telephone-event
//! format per audio section and one H.264 format per video section, so that the answer names exactly the formats
//! the far end listed first (see its comment for the two reasons).

use std::collections::HashMap;

/// One media section: its `m=` line's media and port, and its attribute lines (`a=...`, trimmed).
struct Section<'a> {
    media: &'a str,
    port: &'a str,
    /// The payload types of its `m=` line.
    formats: Vec<&'a str>,
    attributes: Vec<&'a str>,
}

impl<'a> Section<'a> {
    /// The values of the `a=<name>:<value>` lines.
    fn values(&self, name: &str) -> impl Iterator<Item = &'a str> + '_ {
        let prefix = format!("a={name}:");
        self.attributes.iter().filter_map(move |a| a.strip_prefix(prefix.as_str()).map(str::trim))
    }
}

/// The media sections of `sdp`, in order (the session part before the first `m=` is left out).
fn sections(sdp: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split_whitespace();
            let media = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("");
            let formats = fields.skip(1).collect();
            out.push(Section { media, port, formats, attributes: Vec::new() });
        } else if line.starts_with("a=") {
            if let Some(section) = out.last_mut() {
                section.attributes.push(line);
            }
        }
    }
    out
}

/// The direction of the first audio section: the far end holds us when it only receives or is inactive.
pub(crate) fn holds_us(sdp: &str) -> bool {
    sections(sdp)
        .iter()
        .find(|s| s.media == "audio")
        .and_then(|s| {
            s.attributes.iter().find_map(|a| match *a {
                "a=sendonly" | "a=inactive" => Some(true),
                "a=sendrecv" | "a=recvonly" => Some(false),
                _ => None,
            })
        })
        .unwrap_or(false)
}

/// Whether a session description carries video (a video section with a non-zero port).
pub(crate) fn has_video(sdp: &str) -> bool {
    sections(sdp).iter().any(|s| s.media == "video" && !s.port.is_empty() && s.port != "0")
}

/// The mid of the first section of `media` ("audio", "video") that has one.
pub(crate) fn mid_of(sdp: &str, media: &str) -> Option<String> {
    sections(sdp).iter().filter(|s| s.media == media).find_map(|s| s.values("mid").next().map(str::to_owned))
}

/// The SSRCs each section with a mid announces (`a=ssrc:` lines), with that mid.
pub(crate) fn ssrc_mids(sdp: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for section in sections(sdp) {
        let Some(mid) = section.values("mid").next() else { continue };
        for value in section.values("ssrc") {
            if let Some(ssrc) = value.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()) {
                out.insert(ssrc, mid.to_owned());
            }
        }
    }
    out
}

/// Whether an H.264 fmtp line is something we can send and decode (packetization-mode 1, baseline family:
/// profile-level-id 42xxxx).
pub(crate) fn h264_fmtp_usable(fmtp: &str) -> bool {
    let mut mode1 = false;
    let mut baseline = true;
    for param in fmtp.split(';') {
        let mut kv = param.trim().splitn(2, '=');
        let key = kv.next().unwrap_or("").trim().to_ascii_lowercase();
        let value = kv.next().unwrap_or("").trim().to_ascii_lowercase();
        match key.as_str() {
            "packetization-mode" => mode1 = value == "1",
            "profile-level-id" => baseline = value.starts_with("42"),
            _ => {}
        }
    }
    mode1 && baseline
}

/// One format (payload type) of a media section, as its `a=rtpmap` and `a=fmtp` lines describe it.
struct Format<'a> {
    pt: &'a str,
    /// `H264/90000`, `telephone-event/8000`, ...
    encoding: &'a str,
    fmtp: &'a str,
}

fn formats<'a>(section: &Section<'a>) -> Vec<Format<'a>> {
    let fmtp_of = |pt: &str| {
        section.values("fmtp").find_map(|v| v.strip_prefix(pt).and_then(|r| r.strip_prefix(' ')).map(str::trim))
    };
    section
        .values("rtpmap")
        .filter_map(|v| {
            let (pt, encoding) = v.split_once(' ')?;
            Some(Format { pt, encoding: encoding.trim(), fmtp: fmtp_of(pt).unwrap_or("") })
        })
        .collect()
}

/// The static payload types a section lists on its `m=` line without an `a=rtpmap`, with their RFC 3551 encoding.
fn static_formats_without_rtpmap<'a>(section: &Section<'a>) -> Vec<(u8, &'static str)> {
    let mapped: Vec<&str> = section.values("rtpmap").filter_map(|v| v.split_whitespace().next()).collect();
    section
        .formats
        .iter()
        .filter(|f| !mapped.contains(f))
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| static_encoding(pt).map(|e| (pt, e)))
        .collect()
}

/// The payload types of a section to drop: all telephone-events but one (the one at the clock rate of the
/// section's first codec, else the first), all H.264 formats but the first usable one, and the retransmission
/// formats (`apt=`) of those dropped.
fn formats_to_drop(section: &Section<'_>) -> Vec<String> {
    let formats = formats(section);
    let mut drop: Vec<String> = Vec::new();
    let is = |f: &Format<'_>, name: &str| f.encoding.split('/').next().is_some_and(|e| e.eq_ignore_ascii_case(name));
    let events: Vec<&Format<'_>> = formats.iter().filter(|f| is(f, "telephone-event")).collect();
    if events.len() > 1 {
        let first_rate = formats.iter().find(|f| !is(f, "telephone-event")).and_then(|f| f.encoding.split('/').nth(1));
        let keep = events.iter().find(|f| f.encoding.split('/').nth(1) == first_rate).unwrap_or(&events[0]).pt;
        drop.extend(events.iter().filter(|f| f.pt != keep).map(|f| f.pt.to_owned()));
    }
    let h264: Vec<&Format<'_>> = formats.iter().filter(|f| is(f, "H264")).collect();
    if let Some(keep) = h264.iter().find(|f| h264_fmtp_usable(f.fmtp)) {
        drop.extend(h264.iter().filter(|f| f.pt != keep.pt).map(|f| f.pt.to_owned()));
    }
    let rtx: Vec<String> = formats
        .iter()
        .filter(|f| is(f, "rtx"))
        .filter(|f| {
            f.fmtp.split(';').any(|p| p.trim().strip_prefix("apt=").is_some_and(|apt| drop.iter().any(|d| d == apt)))
        })
        .map(|f| f.pt.to_owned())
        .collect();
    drop.extend(rtx);
    drop
}

/// The encoding of a static payload type (RFC 3551 tables 4 and 5), for an offer that lists one without `a=rtpmap`.
fn static_encoding(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU/8000",
        3 => "GSM/8000",
        4 => "G723/8000",
        5 => "DVI4/8000",
        6 => "DVI4/16000",
        7 => "LPC/8000",
        8 => "PCMA/8000",
        9 => "G722/8000",
        10 => "L16/44100/2",
        11 => "L16/44100",
        12 => "QCELP/8000",
        13 => "CN/8000",
        14 => "MPA/90000",
        15 => "G728/8000",
        16 => "DVI4/11025",
        17 => "DVI4/22050",
        18 => "G729/8000",
        25 => "CelB/90000",
        26 => "JPEG/90000",
        28 => "nv/90000",
        31 => "H261/90000",
        32 => "MPV/90000",
        33 => "MP2T/90000",
        34 => "H263/90000",
        _ => return None,
    })
}

/// The far end's offer as it is applied: each audio section keeps one telephone-event format and each video
/// section one H.264 format (the first that is packetization-mode 1 and baseline), their other formats dropped
/// from the `m=` line and from the `rtpmap`, `fmtp` and `rtcp-fb` lines; a static payload type listed without an
/// `a=rtpmap` gets the one RFC 3551 gives it (webrtc-rs 0.21 refuses such an offer, "payload type not found": seen
/// with linphone's PCMA 8 and G729 18). Two reasons for the dropping, both seen:
/// - webrtc-rs 0.21 matches telephone-event formats without their clock rate: an offer of both 48000 and 8000 Hz
///   (browsers) gets an answer naming one payload type twice;
/// - Janus's sip plugin maps an answer's H.264 onto the *first* H.264 payload type of the SIP offer, keeping our
///   fmtp and leaving our `rtcp-fb` lines on the old number: answering a browser's second H.264 format (say 108
///   42e01f behind 102 42001f) gives it a 200 OK whose 102 carries a profile it did not offer for 102, and the call
///   has no media. Answering the first usable H.264 format keeps every number where the offer put it.
///
/// Everything else is kept as it is, line endings included.
pub(crate) fn normalize_offer(sdp: &str) -> String {
    let parsed = sections(sdp);
    let drops: Vec<Vec<String>> = parsed.iter().map(formats_to_drop).collect();
    let missing: Vec<Vec<(u8, &str)>> = parsed.iter().map(static_formats_without_rtpmap).collect();
    if drops.iter().all(Vec::is_empty) && missing.iter().all(Vec::is_empty) {
        return sdp.to_owned();
    }
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len());
    let mut index: Option<usize> = None;
    for line in sdp.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("m=") {
            index = Some(index.map_or(0, |i| i + 1));
        }
        let drop = index.and_then(|i| drops.get(i)).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(m) = trimmed.strip_prefix("m=") {
            // m=<media> <port> <proto> <fmt> ...
            let fields: Vec<&str> = m.split_whitespace().collect();
            let (head, fmts) = fields.split_at(fields.len().min(3));
            let kept: Vec<&str> = fmts.iter().copied().filter(|f| !drop.iter().any(|d| d == f)).collect();
            out.push_str(&format!("m={} {}", head.join(" "), kept.join(" ")));
            out.push_str(eol);
            // The rtpmap lines a static payload type went without, right after its m= line.
            for (pt, encoding) in index.and_then(|i| missing.get(i)).map(Vec::as_slice).unwrap_or(&[]) {
                out.push_str(&format!("a=rtpmap:{pt} {encoding}"));
                out.push_str(eol);
            }
            continue;
        }
        if drop.is_empty() {
            out.push_str(line);
            out.push_str(eol);
            continue;
        }
        let names_dropped = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
            trimmed
                .strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|pt| drop.iter().any(|d| d == pt))
        });
        if !names_dropped {
            out.push_str(line);
            out.push_str(eol);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_is_read_from_the_audio_direction_of_an_offer() {
        let held = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP 96\r\na=sendrecv\r\n";
        // Janus relays the far end's sendonly as what it offers us: we would only receive.
        let sendonly = "v=0\r\nm=audio 9 RTP 111\r\na=sendonly\r\n";
        let resumed = "v=0\r\nm=audio 9 RTP 111\r\na=sendrecv\r\n";
        let inactive = "v=0\r\nm=audio 9 RTP 111\r\na=inactive\r\n";
        assert!(!holds_us(held));
        assert!(holds_us(sendonly));
        assert!(holds_us(inactive));
        assert!(!holds_us(resumed));
    }

    #[test]
    fn video_is_read_from_the_video_section_port() {
        assert!(has_video("m=audio 5000 RTP 0\r\nm=video 5002 RTP 96\r\n"));
        assert!(!has_video("m=audio 5000 RTP 0\r\nm=video 0 RTP 96\r\n"));
        assert!(!has_video("m=audio 5000 RTP 0\r\n"));
    }

    #[test]
    fn the_video_mid_is_read_from_our_offer() {
        let sdp = "v=0\r\nm=audio 9 RTP 111\r\na=mid:0\r\nm=video 9 RTP 96\r\na=mid:1\r\n";
        assert_eq!(mid_of(sdp, "video").as_deref(), Some("1"));
        assert_eq!(mid_of(sdp, "audio").as_deref(), Some("0"));
        assert_eq!(mid_of("v=0\r\nm=audio 9 RTP 111\r\na=mid:0\r\n", "video"), None);
    }

    #[test]
    fn the_ssrcs_of_each_media_section_are_mapped_to_its_mid() {
        // The shape of a Janus videoroom subscriber offer: per m-line a mid and the SSRCs it will send.
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ssrc:111 cname:janus\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=ssrc-group:FID 222 223\r\n\
                   a=ssrc:222 cname:janus\r\na=ssrc:223 cname:janus\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n\
                   a=inactive\r\n";
        let map = ssrc_mids(sdp);
        assert_eq!(map.get(&111).map(String::as_str), Some("0"));
        assert_eq!(map.get(&222).map(String::as_str), Some("1"));
        assert_eq!(map.get(&223).map(String::as_str), Some("1"));
        assert_eq!(map.len(), 3, "an inactive section without SSRCs adds nothing: {map:?}");
    }

    /// The shape of a Chromium offer as Janus's sip plugin hands it on: VP8, then H.264 baseline (42001f) before
    /// constrained baseline (42e01f), each with its retransmission format; telephone-event at 48 and 8 kHz.
    const BROWSER_OFFER: &str = "v=0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63 110 126\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtcp-fb:111 transport-cc\r\na=rtpmap:63 red/48000/2\r\n\
        a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 108 109\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n\
        a=rtcp-fb:102 nack pli\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:108 H264/90000\r\na=rtcp-fb:108 nack pli\r\n\
        a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\na=sendrecv\r\n";

    #[test]
    fn an_offer_keeps_its_first_usable_h264_and_one_telephone_event() {
        let out = normalize_offer(BROWSER_OFFER);
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 110\r\n"), "{out}");
        assert!(out.contains("a=rtpmap:110 telephone-event/48000\r\n"));
        assert!(!out.contains("126"), "the 8 kHz event is gone everywhere: {out}");
        assert!(out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n"), "{out}");
        assert!(out.contains("profile-level-id=42001f"));
        for gone in ["a=rtpmap:108", "a=fmtp:108", "a=rtcp-fb:108", "a=rtpmap:109", "apt=108"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.ends_with("a=sendrecv\r\n") && !out.contains("\r\r"));
        assert_eq!(normalize_offer(&out), out, "normalising twice changes nothing");
    }

    #[test]
    fn the_first_usable_h264_is_kept_whatever_the_order() {
        // 42e01f first this time, and a packetization-mode 0 and a high-profile format before both.
        let sdp = "v=0\r\nm=video 9 RTP/SAVPF 104 112 108 102\r\na=rtpmap:104 H264/90000\r\n\
                   a=fmtp:104 packetization-mode=0;profile-level-id=42e01f\r\na=rtpmap:112 H264/90000\r\n\
                   a=fmtp:112 packetization-mode=1;profile-level-id=64001f\r\na=rtpmap:108 H264/90000\r\n\
                   a=fmtp:108 packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:102 H264/90000\r\n\
                   a=fmtp:102 packetization-mode=1;profile-level-id=42001f\r\n";
        let out = normalize_offer(sdp);
        assert!(out.contains("m=video 9 RTP/SAVPF 108\r\n"), "{out}");
        assert!(out.contains("a=fmtp:108 packetization-mode=1;profile-level-id=42e01f"));
        // No usable H.264 at all: nothing is dropped (the answer will simply not have H.264).
        let unusable = "v=0\r\nm=video 9 RTP/SAVPF 104 96\r\na=rtpmap:104 H264/90000\r\n\
                        a=fmtp:104 packetization-mode=0\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(normalize_offer(unusable), unusable);
    }

    #[test]
    fn a_plain_sip_offer_is_left_as_it_is() {
        // baresip through Janus: one telephone-event at 8 kHz next to Opus, VP8 only; LF line endings too.
        let sdp = "v=0\r\nm=audio 9 RTP/SAVPF 111 0 8 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
                   m=video 9 RTP/SAVPF 96\r\n\
                   a=rtpmap:96 VP8/90000\r\n";
        assert_eq!(normalize_offer(sdp), sdp);
        let lf = sdp.replace("\r\n", "\n");
        assert_eq!(normalize_offer(&lf), lf);
    }

    #[test]
    fn telephone_events_follow_the_first_codec_clock() {
        // PCMU first: the 8 kHz event is the one kept.
        let sdp = "v=0\nm=audio 9 RTP/AVP 0 101 110\na=rtpmap:0 PCMU/8000\na=rtpmap:110 telephone-event/48000\n\
                   a=rtpmap:101 telephone-event/8000\n";
        let out = normalize_offer(sdp);
        assert!(out.contains("m=audio 9 RTP/AVP 0 101\n") && !out.contains("110"), "{out}");
    }

    #[test]
    fn h264_fmtp_lines_are_judged_by_mode_and_profile() {
        assert!(h264_fmtp_usable("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"));
        assert!(h264_fmtp_usable("profile-level-id=42001f; packetization-mode=1"));
        assert!(!h264_fmtp_usable("packetization-mode=0;profile-level-id=42e01f"));
        assert!(!h264_fmtp_usable("packetization-mode=1;profile-level-id=640c1f"));
    }

    #[test]
    fn static_payload_types_without_rtpmap_get_theirs() {
        // linphone's offer: PCMA and G729 by number alone.
        let sdp = "v=0\r\nm=audio 7078 RTP/AVP 96 0 8 18 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:101 telephone-event/8000\r\nm=video 9078 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let out = normalize_offer(sdp);
        assert!(
            out.contains("m=audio 7078 RTP/AVP 96 0 8 18 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n"),
            "{out}"
        );
        assert_eq!(out.matches("a=rtpmap:0 ").count(), 1, "a mapped one is left alone");
        assert!(out.contains("m=video 9078 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"));
        assert_eq!(normalize_offer(&out), out);
        // A dynamic payload type without rtpmap has no standard meaning: left as it is.
        let dynamic = "v=0\r\nm=audio 1 RTP/AVP 97\r\n";
        assert_eq!(normalize_offer(dynamic), dynamic);
    }
}
