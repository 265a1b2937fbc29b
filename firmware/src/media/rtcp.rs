//! The RTCP feedback interceptor: counts inbound NACKs and keyframe requests (PLI/FIR) and marks the
//! keyframe requests for delivery to the application (webrtc-rs 0.21 drops inbound RTCP at the end of
//! the interceptor chain unless an interceptor attaches `Attribute::DeliverToApplication`); and keeps the
//! congestion feedback the bitrate controller needs: the latest REMB (receiver estimated maximum
//! bitrate, which Janus sends) and the latest fraction of our video lost, from receiver reports (and
//! the report blocks of sender reports).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Most local video streams whose SSRCs are remembered to pick their report blocks out.
const MAX_VIDEO_SSRCS: usize = 8;

/// Counters shared between the interceptor (inside the peer connection) and the session.
#[derive(Default, Debug)]
pub(crate) struct FeedbackCounters {
    pub nacks: AtomicU64,
    pub plis: AtomicU64,
    pub firs: AtomicU64,
    /// The latest REMB bitrate in bit/s (0 before the first; see `rembs`).
    pub remb_bps: AtomicU64,
    /// REMB packets received.
    pub rembs: AtomicU64,
    /// The latest fraction of our video lost, RTCP's 8-bit fixed point (lost/256).
    pub fraction_lost: AtomicU64,
    /// Report blocks about our video received (each updates `fraction_lost`).
    pub loss_reports: AtomicU64,
}

/// A consistent-enough snapshot of the congestion feedback, for the bitrate controller: the session
/// compares the counts with its previous snapshot to know whether a new REMB or report arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CongestionFeedback {
    /// The latest REMB, bit/s (`None` before the first).
    pub remb_bps: Option<u64>,
    /// REMB packets received so far.
    pub rembs: u64,
    /// The latest fraction lost (lost/256).
    pub fraction_lost: u8,
    /// Report blocks about our video received so far.
    pub loss_reports: u64,
}

impl FeedbackCounters {
    /// The congestion feedback received so far.
    pub(crate) fn congestion(&self) -> CongestionFeedback {
        let rembs = self.rembs.load(Ordering::Acquire);
        let loss_reports = self.loss_reports.load(Ordering::Acquire);
        CongestionFeedback {
            remb_bps: (rembs > 0).then(|| self.remb_bps.load(Ordering::Relaxed)),
            rembs,
            fraction_lost: u8::try_from(self.fraction_lost.load(Ordering::Relaxed)).unwrap_or(u8::MAX),
            loss_reports,
        }
    }
}

/// See the module comment. Sits application-most in the chain so every other interceptor (the NACK
/// responder in particular) has already seen each packet.
pub(crate) struct FeedbackInterceptor {
    counters: Arc<FeedbackCounters>,
    /// SSRCs of the local video streams bound to the chain (report blocks about them are ours).
    video_ssrcs: Vec<u32>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl FeedbackInterceptor {
    pub(crate) fn new(counters: Arc<FeedbackCounters>) -> Self {
        Self { counters, video_ssrcs: Vec::new(), read_queue: VecDeque::new(), write_queue: VecDeque::new() }
    }

    /// Counts what `packets` carry and returns the keyframe requests among them.
    fn count(&self, packets: &[Box<dyn rtc::rtcp::Packet>]) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        let mut requests: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        for packet in packets {
            let any = packet.as_any();
            if any.is::<TransportLayerNack>() {
                self.counters.nacks.fetch_add(1, Ordering::Relaxed);
            } else if any.is::<PictureLossIndication>() {
                self.counters.plis.fetch_add(1, Ordering::Relaxed);
                requests.push(packet.clone());
            } else if any.is::<FullIntraRequest>() {
                self.counters.firs.fetch_add(1, Ordering::Relaxed);
                requests.push(packet.clone());
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                self.note_remb(remb);
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                self.note_reports(&rr.reports);
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                self.note_reports(&sr.reports);
            }
        }
        requests
    }

    fn note_remb(&self, remb: &ReceiverEstimatedMaximumBitrate) {
        let bitrate = remb.bitrate;
        if !bitrate.is_finite() || bitrate < 0.0 {
            log::debug!("ignoring a REMB with bitrate {bitrate}");
            return;
        }
        // `as` saturates: a huge estimate becomes u64::MAX, which the controller caps at its maximum.
        self.counters.remb_bps.store(bitrate as u64, Ordering::Relaxed);
        self.counters.rembs.fetch_add(1, Ordering::Release);
    }

    /// Takes the report blocks about our video (about every stream if no video stream was bound:
    /// then the worst one counts).
    fn note_reports(&self, reports: &[ReceptionReport]) {
        let ours = reports.iter().filter(|r| self.video_ssrcs.is_empty() || self.video_ssrcs.contains(&r.ssrc));
        if let Some(worst) = ours.map(|r| r.fraction_lost).max() {
            self.counters.fraction_lost.store(u64::from(worst), Ordering::Relaxed);
            self.counters.loss_reports.fetch_add(1, Ordering::Release);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests = self.count(packets);
            if requests.is_empty() {
                // Reports, REMBs and NACKs are for the interceptors, which have already acted on them.
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackInterceptor {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let is_video = info.mime_type.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("video/"));
        if is_video && !self.video_ssrcs.contains(&info.ssrc) {
            if self.video_ssrcs.len() < MAX_VIDEO_SSRCS {
                self.video_ssrcs.push(info.ssrc);
            } else {
                log::debug!("not tracking loss of local video stream {:#x}: too many streams", info.ssrc);
            }
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.video_ssrcs.retain(|s| *s != info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::{TransportContext, TransportMessage};

    fn rtcp(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    fn block(ssrc: u32, fraction_lost: u8) -> ReceptionReport {
        ReceptionReport { ssrc, fraction_lost, ..Default::default() }
    }

    fn video(ssrc: u32) -> StreamInfo {
        StreamInfo { ssrc, mime_type: "video/H264".into(), ..Default::default() }
    }

    #[test]
    fn remb_keeps_the_latest_value_and_is_not_delivered() {
        let counters = Arc::new(FeedbackCounters::default());
        let mut icp = FeedbackInterceptor::new(Arc::clone(&counters));
        assert_eq!(counters.congestion().remb_bps, None);
        for bps in [1_500_000.0, 640_000.0] {
            let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 1, bitrate: bps, ssrcs: vec![42] };
            icp.handle_read(rtcp(vec![Box::new(remb)])).unwrap();
        }
        let c = counters.congestion();
        assert_eq!((c.remb_bps, c.rembs), (Some(640_000), 2));
        assert!(icp.poll_read().is_none(), "a REMB alone is not for the application");
        // A nonsensical REMB is ignored.
        let bad = ReceiverEstimatedMaximumBitrate { sender_ssrc: 1, bitrate: f32::NAN, ssrcs: vec![] };
        icp.handle_read(rtcp(vec![Box::new(bad)])).unwrap();
        assert_eq!(counters.congestion().rembs, 2);
    }

    #[test]
    fn remb_survives_a_wire_round_trip() {
        let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 7, bitrate: 1_234_000.0, ssrcs: vec![42] };
        let raw = rtc::rtcp::packet::marshal(&[Box::new(remb) as Box<dyn rtc::rtcp::Packet>]).unwrap();
        let parsed = rtc::rtcp::packet::unmarshal(&mut raw.freeze()).unwrap();
        let counters = Arc::new(FeedbackCounters::default());
        FeedbackInterceptor::new(Arc::clone(&counters)).handle_read(rtcp(parsed)).unwrap();
        let got = counters.congestion().remb_bps.unwrap();
        // REMB's mantissa/exponent encoding is lossy: within 0.1 %.
        assert!(got.abs_diff(1_234_000) < 1_300, "{got}");
    }

    #[test]
    fn fraction_lost_comes_from_our_video_blocks() {
        let counters = Arc::new(FeedbackCounters::default());
        let mut icp = FeedbackInterceptor::new(Arc::clone(&counters));
        icp.bind_local_stream(&video(0xabc));
        icp.bind_local_stream(&StreamInfo { ssrc: 0xa0d, mime_type: "audio/opus".into(), ..Default::default() });
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(0xa0d, 200), block(0xabc, 30)], ..Default::default() };
        icp.handle_read(rtcp(vec![Box::new(rr)])).unwrap();
        let c = counters.congestion();
        assert_eq!((c.fraction_lost, c.loss_reports), (30, 1));
        // Sender reports carry report blocks too.
        let sr = SenderReport { ssrc: 1, reports: vec![block(0xabc, 5)], ..Default::default() };
        icp.handle_read(rtcp(vec![Box::new(sr)])).unwrap();
        let c = counters.congestion();
        assert_eq!((c.fraction_lost, c.loss_reports), (5, 2));
        // A report about other streams only does not count.
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(0xa0d, 99)], ..Default::default() };
        icp.handle_read(rtcp(vec![Box::new(rr)])).unwrap();
        assert_eq!(counters.congestion().loss_reports, 2);
        assert!(icp.poll_read().is_none());
    }

    #[test]
    fn without_bound_video_the_worst_block_counts() {
        let counters = Arc::new(FeedbackCounters::default());
        let mut icp = FeedbackInterceptor::new(Arc::clone(&counters));
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(1, 10), block(2, 40)], ..Default::default() };
        icp.handle_read(rtcp(vec![Box::new(rr)])).unwrap();
        assert_eq!(counters.congestion().fraction_lost, 40);
        // Once a video stream is bound and unbound, the filter is gone again.
        icp.bind_local_stream(&video(3));
        icp.unbind_local_stream(&video(3));
        let rr = ReceiverReport { ssrc: 1, reports: vec![block(1, 12)], ..Default::default() };
        icp.handle_read(rtcp(vec![Box::new(rr)])).unwrap();
        assert_eq!(counters.congestion().fraction_lost, 12);
    }

    #[test]
    fn keyframe_requests_are_delivered_and_counted() {
        let counters = Arc::new(FeedbackCounters::default());
        let mut icp = FeedbackInterceptor::new(Arc::clone(&counters));
        let pli = PictureLossIndication { sender_ssrc: 1, media_ssrc: 2 };
        let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 1, bitrate: 500_000.0, ssrcs: vec![2] };
        icp.handle_read(rtcp(vec![Box::new(pli), Box::new(remb)])).unwrap();
        let out = icp.poll_read().expect("PLI delivered");
        assert!(out.message.attributes.iter().any(|a| matches!(a, Attribute::DeliverToApplication)));
        match &out.message.packet {
            Packet::Rtcp(p) => assert_eq!(p.len(), 1, "only the request is delivered"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(counters.plis.load(Ordering::Relaxed), 1);
        assert_eq!(counters.congestion().remb_bps, Some(500_000));
    }
}
