//! The wire counter: an interceptor at the wire-most end of the chain that counts the RTP packets of our audio
//! and video streams that really leave for the transport. webrtc-rs accepts a packet into a track's queue and may
//! still drop it in the peer connection's driver (an unnegotiated header extension or payload type, seen with
//! plain SIP endpoints); such a packet never reaches the chain, so "sent" counted here cannot hide that class of
//! failure, as a count taken at the track did.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Where the counter sits: below congestion control (1_000), the last thing a departing packet meets, so
/// retransmissions are counted and nothing the pacer still holds is.
pub(crate) const WIRE_SLOT: usize = 500;

/// Packets of our two streams seen leaving, by SSRC.
#[derive(Debug)]
pub(crate) struct WireCounters {
    audio_ssrc: u32,
    video_ssrc: u32,
    pub audio_packets: AtomicU64,
    pub video_packets: AtomicU64,
    /// Telephone-event packets among the audio ones (by payload type).
    pub telephone_events: AtomicU64,
    telephone_event_pt: AtomicU64,
}

/// No telephone-event payload type negotiated (payload types are 7 bits).
const NO_PT: u64 = u64::MAX;

impl WireCounters {
    pub(crate) fn new(audio_ssrc: u32, video_ssrc: u32) -> Self {
        WireCounters {
            audio_ssrc,
            video_ssrc,
            audio_packets: AtomicU64::new(0),
            video_packets: AtomicU64::new(0),
            telephone_events: AtomicU64::new(0),
            telephone_event_pt: AtomicU64::new(NO_PT),
        }
    }

    /// The payload type that counts as telephone-event (after negotiation).
    pub(crate) fn set_telephone_event_pt(&self, pt: Option<u8>) {
        self.telephone_event_pt.store(pt.map_or(NO_PT, u64::from), Ordering::Relaxed);
    }

    fn count(&self, packet: &rtc::rtp::Packet) {
        let ssrc = packet.header.ssrc;
        if ssrc == self.audio_ssrc {
            self.audio_packets.fetch_add(1, Ordering::Relaxed);
            if u64::from(packet.header.payload_type) == self.telephone_event_pt.load(Ordering::Relaxed) {
                self.telephone_events.fetch_add(1, Ordering::Relaxed);
            }
        } else if ssrc == self.video_ssrc {
            self.video_packets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// See the module comment. Passes every packet on unchanged.
pub(crate) struct WireCounter {
    counters: Arc<WireCounters>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl WireCounter {
    pub(crate) fn new(counters: Arc<WireCounters>) -> Self {
        WireCounter { counters, read_queue: VecDeque::new(), write_queue: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for WireCounter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            self.counters.count(packet);
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for WireCounter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::{TransportContext, TransportMessage};

    fn rtp(ssrc: u32, payload_type: u8) -> TaggedPacket {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header { version: 2, ssrc, payload_type, ..Default::default() },
            payload: bytes::Bytes::from_static(&[1, 2, 3]),
        };
        TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        }
    }

    #[test]
    fn packets_are_counted_per_stream_and_passed_on() {
        let counters = Arc::new(WireCounters::new(1, 2));
        counters.set_telephone_event_pt(Some(101));
        let mut icp = WireCounter::new(Arc::clone(&counters));
        for (ssrc, pt) in [(1, 111), (1, 101), (2, 96), (2, 96), (3, 96)] {
            icp.handle_write(rtp(ssrc, pt)).unwrap();
        }
        assert_eq!(counters.audio_packets.load(Ordering::Relaxed), 2);
        assert_eq!(counters.telephone_events.load(Ordering::Relaxed), 1);
        assert_eq!(counters.video_packets.load(Ordering::Relaxed), 2, "another SSRC is not ours");
        let mut passed = 0;
        while icp.poll_write().is_some() {
            passed += 1;
        }
        assert_eq!(passed, 5, "every packet goes on");
        // Inbound packets are not counted as sent.
        icp.handle_read(rtp(1, 111)).unwrap();
        assert_eq!(counters.audio_packets.load(Ordering::Relaxed), 2);
        assert!(icp.poll_read().is_some());
    }
}
