//! What callbox reads of a session description, from its media sections: whether the far end holds us (the audio
//! direction), whether video was negotiated (a video section with a port), the mid of a kind of section (our own
//! offer's camera, for the room's stream descriptions), and the SSRCs each section announces (a room
//! subscription's streams). Pure functions over the text; anything they do not understand counts as absent.

use std::collections::HashMap;

/// One media section: its `m=` line's media and port, and its attribute lines (`a=...`, trimmed).
struct Section<'a> {
    media: &'a str,
    port: &'a str,
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
            out.push(Section { media, port, attributes: Vec::new() });
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
}
