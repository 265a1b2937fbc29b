//! SIPp (Debian `sip-tester`) as a scripted foreign SIP endpoint: a scenario file run for one call, its RTP
//! played from a pcap file the harness writes ([`opus_tone_pcap`]: an Opus-encoded tone, what a trunk's ringback
//! or announcement sends). SIPp ends by itself when its scenario ends; [`Sipp::wait`] reports how (exit 0: every
//! step of the scenario happened as written).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::HarnessError;
use crate::process::ServerProcess;
use crate::stack::Stack;

/// How SIPp is reached and what it plays.
#[derive(Debug, Clone)]
pub struct SippOptions {
    /// A name for the logs.
    pub name: String,
    /// The scenario (SIPp XML).
    pub scenario: String,
    /// Files placed beside the scenario (a pcap to play, ...): name and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Listen on the stack's trunk address (Kamailio routes E.164 numbers there, and trusts what comes from it).
    pub as_trunk: bool,
    /// Run as a UAC sending its first request here (Kamailio: `Stack::kamailio_addr`); `None`: a UAS.
    pub remote: Option<std::net::SocketAddr>,
}

/// A running SIPp; dropping it kills the process.
pub struct Sipp {
    process: Arc<ServerProcess>,
    dir: PathBuf,
}

impl Sipp {
    /// Starts SIPp for one call (`-m 1`): a UAS, or a UAC towards `remote`; its SIP on the trunk address (or a
    /// port of its own), its media on 127.0.0.1.
    pub fn start(stack: &Stack, opts: SippOptions) -> Result<Sipp, HarnessError> {
        let dir = stack.dir().join(format!("sipp-{}", opts.name));
        let io = |path: PathBuf| move |source| HarnessError::Io { what: "cannot write", path, source };
        std::fs::create_dir_all(&dir).map_err(io(dir.clone()))?;
        let scenario = dir.join("scenario.xml");
        std::fs::write(&scenario, &opts.scenario).map_err(io(scenario.clone()))?;
        for (name, bytes) in &opts.files {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(io(p.clone()))?;
        }
        let port = if opts.as_trunk { stack.trunk_addr().port() } else { crate::ports::reserve_block(1)? };
        let media = crate::ports::reserve_block(4)?;
        let mut args: Vec<String> = [
            "-sf",
            &scenario.display().to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
            "-mp",
            &media.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-trace_msg",
            "-timeout",
            "120",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(remote) = opts.remote {
            args.push(remote.to_string());
        }
        let log = dir.join("sipp.log");
        let process =
            Arc::new(ServerProcess::spawn(&format!("sipp-{}", opts.name), "sipp", &args, &dir, log, 64 << 20)?);
        Ok(Sipp { process, dir })
    }

    /// Waits for SIPp to end by itself; `Ok` when it passed its scenario (exit 0), else the error names the exit
    /// status and the end of SIPp's log and error trace.
    pub async fn wait(&self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.exit_status() {
                if status.success() {
                    return Ok(());
                }
                return Err(HarnessError::Command {
                    name: self.process.name().to_string(),
                    command: "scenario".into(),
                    reason: format!("exited {status}:\n{}\n{}", self.process.log_tail(2000), self.error_trace()),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError::Command {
                    name: self.process.name().to_string(),
                    command: "scenario".into(),
                    reason: format!("still running after {timeout:?}:\n{}", self.error_trace()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The folder of its scenario, logs and traces.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIPp's error trace (`*_errors.log`), cut to its last 4 KB.
    fn error_trace(&self) -> String {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return String::new() };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_errors.log")))
            .map(|p| crate::process::tail(&p, 4096))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What a SIPp trunk answers an appliance's offer with: Opus (the offer's payload type 111) and telephone-event on
/// audio, video refused (a trunk carries none).
pub const TRUNK_ANSWER_SDP: &str = "v=0
o=trunk 1 1 IN IP[local_ip_type] [media_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 111 101
a=rtpmap:111 opus/48000/2
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 0 RTP/AVP 96
";

/// A UAS scenario step: the response `status` ("183 Session Progress", "200 OK") to the INVITE just received, in
/// the dialog SIPp's tag opens (Record-Route echoed), carrying `sdp` if given; a 2xx is retransmitted until ACKed.
pub fn uas_response(status: &str, sdp: Option<&str>) -> String {
    let retrans = if status.starts_with('2') { " retrans=\"500\"" } else { "" };
    let (content_type, body) = match sdp {
        Some(sdp) => ("Content-Type: application/sdp\n", sdp),
        None => ("", ""),
    };
    format!(
        "<send{retrans}><![CDATA[\nSIP/2.0 {status}\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n\
         [last_Call-ID:]\n[last_CSeq:]\n[last_Record-Route:]\n\
         Contact: <sip:trunk@[local_ip]:[local_port];transport=[transport]>\n{content_type}Content-Length: [len]\n\n{body}\n\
         ]]></send>\n"
    )
}

/// The end of a UAS scenario: the caller's BYE answered 200.
pub const UAS_BYE_ANSWERED: &str =
    "<recv request=\"BYE\"/>\n<send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n\
                                    [last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n\n]]></send>\n";

/// A whole scenario named `name` of these steps.
pub fn scenario(name: &str, steps: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{steps}</scenario>\n")
}

/// A pcap (Ethernet, IPv4, UDP) of an RTP stream of `secs` seconds of a `hz` sine at -12 dBFS, Opus-encoded in
/// 20 ms frames at 48 kHz with payload type `pt`, timed 20 ms apart: what SIPp's `play_pcap_audio` replays
/// towards the far end's media address.
pub fn opus_tone_pcap(hz: f64, secs: u32, pt: u8) -> Result<Vec<u8>, String> {
    const RATE: u32 = 48_000;
    const FRAME: usize = 960;
    let mut encoder = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio)
        .map_err(|e| format!("opus encoder: {e}"))?;
    let mut out = Vec::new();
    // Global header: magic, version 2.4, no zone, no accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let amplitude = 32_767.0 * 10f64.powf(-12.0 / 20.0);
    let step = 2.0 * std::f64::consts::PI * hz / f64::from(RATE);
    let frames = secs * 50;
    let mut pcm = [0i16; FRAME];
    let mut packet = vec![0u8; 1500];
    for n in 0..frames {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (n as usize * FRAME + i) as f64;
            *s = (amplitude * (step * t).sin()) as i16;
        }
        let len = encoder.encode(&pcm, &mut packet).map_err(|e| format!("opus encode: {e}"))?;
        let mut rtp = Vec::with_capacity(12 + len);
        rtp.push(0x80);
        rtp.push(pt & 0x7f);
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&(n * FRAME as u32).to_be_bytes());
        rtp.extend_from_slice(&0x5151_5151u32.to_be_bytes());
        rtp.extend_from_slice(&packet[..len]);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let frame_len = 14 + ip_len;
        let at_us = u64::from(n) * 20_000;
        out.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        // Ethernet: zero addresses, IPv4.
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&[0x08, 0x00]);
        // IPv4: version 4, IHL 5, UDP, loopback to loopback (SIPp rewrites the addresses).
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
        let sum = ip.chunks_exact(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
        out.extend_from_slice(&ip);
        // UDP, no checksum.
        out.extend_from_slice(&6000u16.to_be_bytes());
        out.extend_from_slice(&6000u16.to_be_bytes());
        out.extend_from_slice(&(udp_len as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&rtp);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pcap_holds_one_rtp_packet_per_20_ms() {
        let pcap = opus_tone_pcap(1000.0, 1, 111).expect("a pcap");
        assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // Walk the records: 50 packets, each an Ethernet/IPv4/UDP frame carrying RTP with payload type 111.
        let mut pos = 24;
        let mut count = 0;
        while pos < pcap.len() {
            let len = u32::from_le_bytes(pcap[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let frame = &pcap[pos + 16..pos + 16 + len];
            assert_eq!(&frame[12..14], &[0x08, 0x00]);
            assert_eq!(frame[14 + 9], 17, "UDP");
            let rtp = &frame[14 + 20 + 8..];
            assert_eq!((rtp[0], rtp[1]), (0x80, 111));
            pos += 16 + len;
            count += 1;
        }
        assert_eq!(count, 50);
    }
}
