//! The requests the engine sends a sip-plugin handle, and the lane that carries them: one task per handle sends
//! them in order and reports each outcome back into the engine's loop. A slow Janus then holds up only the
//! requests queued on that handle (in the order the engine decided them), never the engine itself: API commands,
//! media, the other handles' calls and shutdown go on meanwhile.

use crate::calling::CallId;
use crate::signaling::{CallOptions, Jsep, SignalingError, SipEvent, SipHandle, SipRegister};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Requests waiting on one handle; beyond this the engine's request fails at once (Janus is not answering).
const LANE_DEPTH: usize = 32;

/// A request for a sip-plugin handle. No `Debug`: it carries DTMF digits and SIP credentials; what was sent is
/// told by [`Sent`].
pub(super) enum SipRequest {
    /// Place the call with our offer.
    Call {
        uri: String,
        offer: String,
    },
    /// Accept the incoming call; `video`: whether both offer and answer carry video (known for an answer).
    Accept {
        jsep: Jsep,
        video: Option<bool>,
    },
    /// Send our answer as early media (183 Session Progress).
    Progress {
        answer: String,
        video: bool,
    },
    Decline {
        code: u16,
    },
    HangUp,
    /// Hold (`true`) or resume.
    Hold(bool),
    DtmfInfo(char),
    /// Our mute and camera state, as a SIP INFO.
    StateInfo {
        content_type: &'static str,
        body: String,
    },
    /// The answer to a re-INVITE.
    Update(Jsep),
    /// Hang up Janus's side of the PeerConnection of a call that is over (the handle is free once it is done).
    ReleasePeerConnection,
    /// Refresh the registration with new credentials.
    Register(Box<SipRegister>),
    /// Refuse an incoming call from an identity we cannot use (603), and drop its PeerConnection.
    Refuse,
}

/// What a request was, for its outcome: the request's data the engine still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Call,
    Accept { video: Option<bool> },
    Progress { video: bool },
    Decline,
    HangUp,
    Hold(bool),
    DtmfInfo,
    StateInfo,
    Update,
    ReleasePeerConnection,
    Register,
    Refuse,
}

impl From<&SipRequest> for Sent {
    fn from(request: &SipRequest) -> Sent {
        match request {
            SipRequest::Call { .. } => Sent::Call,
            SipRequest::Accept { video, .. } => Sent::Accept { video: *video },
            SipRequest::Progress { video, .. } => Sent::Progress { video: *video },
            SipRequest::Decline { .. } => Sent::Decline,
            SipRequest::HangUp => Sent::HangUp,
            SipRequest::Hold(hold) => Sent::Hold(*hold),
            SipRequest::DtmfInfo(_) => Sent::DtmfInfo,
            SipRequest::StateInfo { .. } => Sent::StateInfo,
            SipRequest::Update(_) => Sent::Update,
            SipRequest::ReleasePeerConnection => Sent::ReleasePeerConnection,
            SipRequest::Register(_) => Sent::Register,
            SipRequest::Refuse => Sent::Refuse,
        }
    }
}

/// A request's outcome, back in the engine's loop.
#[derive(Debug)]
pub(super) struct SipDone {
    /// The connection generation of the handle.
    pub generation: u64,
    pub slot: usize,
    /// The call the request was for.
    pub call: Option<CallId>,
    pub sent: Sent,
    /// Janus's reply (a plugin event, when the request has one), or why it failed.
    pub result: Result<Option<SipEvent>, LaneError>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum LaneError {
    /// Janus refused it or did not answer in time.
    #[error(transparent)]
    Janus(#[from] SignalingError),
    /// It was never sent.
    #[error("not sent: {0}")]
    NotSent(&'static str),
}

struct Job {
    call: Option<CallId>,
    request: SipRequest,
}

/// The request lane of one handle.
pub(super) struct SipLane {
    tx: Option<mpsc::Sender<Job>>,
    task: Option<JoinHandle<()>>,
}

impl SipLane {
    /// Starts the lane of handle `slot` of connection `generation`; outcomes go to `done`.
    pub(super) fn start(sip: SipHandle, generation: u64, slot: usize, done: mpsc::Sender<SipDone>) -> SipLane {
        let (tx, mut rx) = mpsc::channel::<Job>(LANE_DEPTH);
        let task = tokio::spawn(async move {
            while let Some(Job { call, request }) = rx.recv().await {
                let sent = Sent::from(&request);
                let result = perform(&sip, request).await.map_err(LaneError::Janus);
                if done.send(SipDone { generation, slot, call, sent, result }).await.is_err() {
                    return;
                }
            }
        });
        SipLane { tx: Some(tx), task: Some(task) }
    }

    /// Queues a request; when the lane is full (or gone) it is given back with the reason.
    pub(super) fn send(&self, call: Option<CallId>, request: SipRequest) -> Result<(), (Sent, LaneError)> {
        let Some(tx) = &self.tx else {
            return Err((Sent::from(&request), LaneError::NotSent("the handle is closing")));
        };
        tx.try_send(Job { call, request }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => {
                (Sent::from(&job.request), LaneError::NotSent("too many requests wait for Janus on this handle"))
            }
            mpsc::error::TrySendError::Closed(job) => {
                (Sent::from(&job.request), LaneError::NotSent("the handle is gone"))
            }
        })
    }

    /// Lets the queued requests go out until `deadline`, then ends the lane (what is left is given up).
    pub(super) async fn drain(mut self, deadline: Instant) {
        self.tx = None;
        let Some(mut task) = self.task.take() else { return };
        if tokio::time::timeout_at(deadline.into(), &mut task).await.is_err() {
            log::warn!("requests still waiting for Janus at shutdown: given up");
            task.abort();
        }
    }
}

impl Drop for SipLane {
    fn drop(&mut self) {
        // A lane dropped without `drain` (the connection was lost): nothing queued is worth sending.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Sends one request and waits for Janus's reply (each bounded by the session's request timeout).
async fn perform(sip: &SipHandle, request: SipRequest) -> Result<Option<SipEvent>, SignalingError> {
    let reply = match request {
        SipRequest::Call { uri, offer } => {
            let options = CallOptions { autoaccept_reinvites: Some(false), ..CallOptions::default() };
            sip.call_with(&uri, &offer, &options).await?
        }
        SipRequest::Accept { jsep, .. } => sip.accept_with(jsep, Some(false)).await?,
        SipRequest::Progress { answer, .. } => sip.progress(Jsep::answer(answer)).await?,
        SipRequest::Decline { code } => sip.decline(Some(code)).await?,
        SipRequest::HangUp => sip.hangup().await?,
        SipRequest::Hold(true) => sip.hold().await?,
        SipRequest::Hold(false) => sip.unhold().await?,
        SipRequest::DtmfInfo(digit) => sip.dtmf_info(digit, None).await?,
        SipRequest::StateInfo { content_type, body } => sip.info(content_type, &body).await?,
        SipRequest::Update(jsep) => sip.update(jsep).await?,
        SipRequest::ReleasePeerConnection => {
            sip.handle().hangup().await?;
            return Ok(None);
        }
        SipRequest::Register(request) => sip.register(&request).await?,
        SipRequest::Refuse => {
            let declined = sip.decline(Some(603)).await;
            let _ = sip.handle().hangup().await;
            declined?
        }
    };
    Ok(Some(reply))
}
