//! The round-trip floor: an interceptor that reports, in the reception report blocks we send, a delay
//! since the last sender report (DLSR) 2 ms shorter than the real one, so that the sender measures a
//! round trip of at least 1 ms.
//!
//! Why: Janus (1.1.x, ice.c) keeps the packets it sends for retransmission only once it has seen the
//! round-trip time of the stream change from 0. It measures that time from our reports in whole
//! milliseconds, so on a path faster than 1 ms (the same LAN, loopback, a test namespace) it reads
//! 0 ms for ever, keeps no retransmission buffer, and every NACK we send for lost video goes
//! unanswered: under 5 % loss about half the frames of a call were lost for good (docs/unattended.md,
//! Network faults). A report 2 ms "older" moves the sender's estimate by 2 ms — nothing a jitter
//! buffer or a congestion controller would notice — and is enough for Janus to size its NACK queue
//! (to its 200 ms minimum). Reports that carry no sender report reference (LSR 0) are left alone,
//! as are the other fields; a DLSR shorter than the shift becomes 0.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Just wire-ward of the receiver report generator (10_000), so every report it emits passes here;
/// above the pacer (3_000) like any interceptor that touches generated RTCP.
pub(crate) const RTT_FLOOR_SLOT: usize = 9_500;

/// How much shorter the reported delay is: 2 ms in DLSR's unit of 1/65536 s, so that an RTT of a
/// few microseconds still reads as at least 1 ms after the sender's truncation to milliseconds.
pub(crate) const DLSR_SHIFT: u32 = 131;

/// See the module comment.
#[derive(Default)]
pub(crate) struct RttFloor {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

fn shorten(reports: &mut [ReceptionReport]) -> bool {
    let mut changed = false;
    for r in reports.iter_mut().filter(|r| r.last_sender_report != 0) {
        r.delay = r.delay.saturating_sub(DLSR_SHIFT);
        changed = true;
    }
    changed
}

/// The report with its blocks' delays shortened, or `None` when it is not a report or nothing changes.
fn shortened(packet: &dyn rtc::rtcp::Packet) -> Option<Box<dyn rtc::rtcp::Packet>> {
    let any = packet.as_any();
    if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
        let mut rr = rr.clone();
        return shorten(&mut rr.reports).then(|| Box::new(rr) as Box<dyn rtc::rtcp::Packet>);
    }
    if let Some(sr) = any.downcast_ref::<SenderReport>() {
        let mut sr = sr.clone();
        return shorten(&mut sr.reports).then(|| Box::new(sr) as Box<dyn rtc::rtcp::Packet>);
    }
    None
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RttFloor {
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

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            for p in packets.iter_mut() {
                if let Some(new) = shortened(p.as_ref()) {
                    *p = new;
                }
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for RttFloor {
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

    fn block(ssrc: u32, lsr: u32, dlsr: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            fraction_lost: 12,
            total_lost: 34,
            last_sequence_number: 5678,
            jitter: 9,
            last_sender_report: lsr,
            delay: dlsr,
        }
    }

    fn tagged(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    fn blocks(msg: &TaggedPacket) -> Vec<ReceptionReport> {
        let Packet::Rtcp(packets) = &msg.message.packet else { panic!("not RTCP") };
        packets
            .iter()
            .flat_map(|p| {
                let any = p.as_any();
                any.downcast_ref::<ReceiverReport>()
                    .map(|r| r.reports.clone())
                    .or_else(|| any.downcast_ref::<SenderReport>().map(|s| s.reports.clone()))
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn report_blocks_with_a_sender_report_reference_read_2_ms_shorter() {
        let mut icp = RttFloor::default();
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![block(10, 0x1234_5678, 6553), block(11, 0, 6553), block(12, 0x1111_0000, 100)],
            ..Default::default()
        };
        let sr = SenderReport { ssrc: 2, reports: vec![block(13, 0x2222_0000, 65536)], ..Default::default() };
        icp.handle_write(tagged(vec![Box::new(rr), Box::new(sr)])).unwrap();
        let out = icp.poll_write().expect("the packet goes on");
        let got = blocks(&out);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].delay, 6553 - DLSR_SHIFT, "0.1 s becomes 0.1 s − 2 ms");
        assert_eq!(got[1].delay, 6553, "no sender report yet (LSR 0): left alone");
        assert_eq!(got[2].delay, 0, "shorter than the shift: 0, never wrapped");
        assert_eq!(got[3].delay, 65536 - DLSR_SHIFT, "a sender report's blocks too");
        for (before, after) in [block(10, 0x1234_5678, 0), block(13, 0x2222_0000, 0)].iter().zip([&got[0], &got[3]]) {
            assert_eq!(
                (before.ssrc, before.fraction_lost, before.total_lost, before.last_sequence_number, before.jitter),
                (after.ssrc, after.fraction_lost, after.total_lost, after.last_sequence_number, after.jitter),
                "nothing else changes"
            );
            assert_eq!(before.last_sender_report, after.last_sender_report);
        }
        assert!(icp.poll_write().is_none());
    }

    /// What Janus computes (rtcp.c: `a − LSR − DLSR` in 1/65536 s, truncated to whole milliseconds)
    /// on a path of 0.3 ms: 0 ms from the true report, at least 1 ms from ours.
    #[test]
    fn a_sub_millisecond_round_trip_reads_as_at_least_1_ms() {
        let janus_rtt_ms = |a: u32, lsr: u32, dlsr: u32| {
            let rtt = a.wrapping_sub(lsr).wrapping_sub(dlsr);
            (rtt >> 16) * 1000 + (((rtt & 0xffff) * 15625) >> 10) / 1000
        };
        let lsr = 0x0100_0000;
        let held = 3277; // we held the sender report 50 ms before reporting
        let path = 20; // 0.3 ms there and back
        let a = lsr + held + path;
        assert_eq!(janus_rtt_ms(a, lsr, held), 0);
        let mut icp = RttFloor::default();
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(10, lsr, held)], ..Default::default() };
        icp.handle_write(tagged(vec![Box::new(rr)])).unwrap();
        let dlsr = blocks(&icp.poll_write().unwrap())[0].delay;
        assert_eq!(janus_rtt_ms(a, lsr, dlsr), 2);
    }

    #[test]
    fn inbound_reports_pass_unchanged() {
        let mut icp = RttFloor::default();
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(10, 0x1234_5678, 6553)], ..Default::default() };
        icp.handle_read(tagged(vec![Box::new(rr)])).unwrap();
        assert_eq!(blocks(&icp.poll_read().unwrap())[0].delay, 6553, "only what we send is changed");
    }
}
