//! The RTCP feedback interceptor: counts inbound NACKs and keyframe requests (PLI/FIR) and marks the
//! keyframe requests for delivery to the application (webrtc-rs 0.21 drops inbound RTCP at the end of
//! the interceptor chain unless an interceptor attaches `Attribute::DeliverToApplication`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Counters shared between the interceptor (inside the peer connection) and the session.
#[derive(Default, Debug)]
pub(crate) struct FeedbackCounters {
    pub nacks: AtomicU64,
    pub plis: AtomicU64,
    pub firs: AtomicU64,
}

/// See the module comment. Sits application-most in the chain so every other interceptor (the NACK
/// responder in particular) has already seen each packet.
pub(crate) struct FeedbackInterceptor {
    counters: Arc<FeedbackCounters>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl FeedbackInterceptor {
    pub(crate) fn new(counters: Arc<FeedbackCounters>) -> Self {
        Self { counters, read_queue: VecDeque::new(), write_queue: VecDeque::new() }
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
                }
            }
            if requests.is_empty() {
                // Reports and NACKs are for the interceptors, which have already acted on them.
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
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
