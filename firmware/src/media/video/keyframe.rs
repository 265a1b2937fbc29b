//! When the video sender forces a keyframe: a pure, clock-injected policy (time is an `Instant` passed
//! in, as in `media/bitrate.rs`). The session's video task tells it what happened — a keyframe was asked
//! for, the far end's PLI/FIR count, a new encoder — and asks it for each frame whether to force a
//! keyframe, which it then does with `VideoEncoder::force_keyframe`. No I/O, no GStreamer.
//!
//! The rules, checked in this order for each frame (one keyframe per frame at most):
//! 1. **Requested**: a keyframe asked for (the call connected, video re-enabled, a PLI or FIR from the far
//!    end) is forced at the next frame, at most one per [`DEFAULT_KEYFRAME_REQUEST_SPACING`] between honoured
//!    requests: requests inside the spacing are coalesced into one, deferred to the first frame after
//!    it, never dropped. Only a request honoured this way clears it; another keyframe does not.
//! 2. **Encoder start**: the first frame of a new encoder is a keyframe.
//! 3. **Periodic**: a keyframe every `startup_period` while the call is in its start-up window (from
//!    connecting; before connecting too), then every `interval`, counted from the last keyframe forced for
//!    any of the three causes. The encoder's own GOP is only a safety net far beyond these.

use std::time::{Duration, Instant};

/// Default least spacing of two keyframes forced by requests (a burst of PLIs yields one keyframe).
pub const DEFAULT_KEYFRAME_REQUEST_SPACING: Duration = Duration::from_millis(200);

/// Why [`KeyframePolicy::on_frame`] forces a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeCause {
    /// A keyframe was asked for (connect, video re-enabled, PLI/FIR).
    Requested,
    /// The first frame of a new encoder.
    EncoderStart,
    /// The start-up or the steady period has passed since the last keyframe.
    Periodic,
}

/// See the module comment.
#[derive(Debug, Clone)]
pub struct KeyframePolicy {
    interval: Duration,
    startup_window: Duration,
    startup_period: Duration,
    min_request_spacing: Duration,
    /// When a keyframe was last forced, for any cause; `None` until the current encoder's first frame.
    last_keyframe: Option<Instant>,
    /// When a request was last honoured.
    last_request: Option<Instant>,
    /// A request not honoured yet.
    pending: bool,
    /// The far end's PLI + FIR count when last told.
    feedback_seen: u64,
}

impl KeyframePolicy {
    /// A policy forcing a keyframe every `startup_period` during the first `startup_window` after
    /// connecting, then every `interval`; requests spaced by at least [`DEFAULT_KEYFRAME_REQUEST_SPACING`].
    pub fn new(interval: Duration, startup_window: Duration, startup_period: Duration) -> Self {
        Self {
            interval,
            startup_window,
            startup_period,
            min_request_spacing: DEFAULT_KEYFRAME_REQUEST_SPACING,
            last_keyframe: None,
            last_request: None,
            pending: false,
            feedback_seen: 0,
        }
    }

    /// Sets the least spacing of two keyframes forced by requests.
    pub fn with_min_request_spacing(mut self, spacing: Duration) -> Self {
        self.min_request_spacing = spacing;
        self
    }

    /// A keyframe was asked for (the call connected, video was re-enabled, a PLI/FIR reached the local
    /// track).
    pub fn on_request(&mut self) {
        self.pending = true;
    }

    /// The far end's keyframe requests counted so far (PLI + FIR, as the feedback interceptor counts
    /// them, starting at zero): a count other than the one last told is a request.
    pub fn on_feedback_count(&mut self, count: u64) {
        if count != self.feedback_seen {
            self.pending = true;
        }
        self.feedback_seen = count;
    }

    /// A new encoder started: its first frame is a keyframe.
    pub fn on_encoder_started(&mut self) {
        self.last_keyframe = None;
    }

    /// The frame about to be encoded at `now`, in a call connected at `connected_at` (`None`: not yet):
    /// whether to force it to be a keyframe, and why. A keyframe returned is taken as forced.
    #[must_use]
    pub fn on_frame(&mut self, now: Instant, connected_at: Option<Instant>) -> Option<KeyframeCause> {
        let since = |t: Instant| now.saturating_duration_since(t);
        let cause = if self.pending && self.last_request.is_none_or(|t| since(t) >= self.min_request_spacing) {
            self.pending = false;
            self.last_request = Some(now);
            KeyframeCause::Requested
        } else {
            let in_startup = connected_at.is_none_or(|t| since(t) < self.startup_window);
            let period = if in_startup { self.startup_period } else { self.interval };
            match self.last_keyframe {
                None => KeyframeCause::EncoderStart,
                Some(t) if since(t) >= period => KeyframeCause::Periodic,
                Some(_) => return None,
            }
        };
        self.last_keyframe = Some(now);
        Some(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyframeCause::{EncoderStart, Periodic, Requested};
    use super::*;
    use Step::{EncoderStarted, Feedback, Frame, Request};

    /// What happens to the policy, times in ms from the test's start.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// A frame at this time, and the keyframe expected for it (`None`: not a keyframe).
        Frame(u64, Option<KeyframeCause>),
        Request,
        Feedback(u64),
        EncoderStarted,
    }

    struct Case {
        name: &'static str,
        /// When the call connected, ms (`None`: not yet).
        connected_at: Option<u64>,
        steps: &'static [Step],
    }

    /// The defaults of `MediaConfig`: every 500 ms for the first 3 s, then every 3 s; requests 200 ms apart.
    fn policy() -> KeyframePolicy {
        KeyframePolicy::new(Duration::from_secs(3), Duration::from_secs(3), Duration::from_millis(500))
    }

    const CASES: &[Case] = &[
        // --- encoder start
        Case {
            name: "the first frame of an encoder is a keyframe, the next are not",
            connected_at: Some(0),
            steps: &[Frame(0, Some(EncoderStart)), Frame(33, None), Frame(66, None)],
        },
        Case {
            name: "a new encoder's first frame is a keyframe again",
            connected_at: Some(0),
            steps: &[
                Frame(0, Some(EncoderStart)),
                Frame(100, None),
                EncoderStarted,
                Frame(133, Some(EncoderStart)),
                Frame(166, None),
            ],
        },
        Case {
            name: "connecting asks for a keyframe: with the first frame, one keyframe",
            connected_at: Some(0),
            steps: &[Request, Frame(0, Some(Requested)), Frame(33, None), Frame(499, None), Frame(500, Some(Periodic))],
        },
        // --- periodic
        Case {
            name: "every start-up period during the start-up window",
            connected_at: Some(0),
            steps: &[
                Frame(0, Some(EncoderStart)),
                Frame(499, None),
                Frame(500, Some(Periodic)),
                Frame(999, None),
                Frame(1_000, Some(Periodic)),
                Frame(1_600, Some(Periodic)),
                Frame(2_099, None),
                Frame(2_100, Some(Periodic)),
            ],
        },
        Case {
            name: "every interval after the start-up window, counted from the last keyframe",
            connected_at: Some(0),
            steps: &[
                Frame(0, Some(EncoderStart)),
                Frame(2_500, Some(Periodic)),
                // The window has ended (3 s after connecting): 3 s from the keyframe at 2.5 s.
                Frame(3_000, None),
                Frame(5_499, None),
                Frame(5_500, Some(Periodic)),
                Frame(8_499, None),
                Frame(8_500, Some(Periodic)),
            ],
        },
        Case {
            name: "before connecting, the start-up period applies",
            connected_at: None,
            steps: &[
                Frame(0, Some(EncoderStart)),
                Frame(500, Some(Periodic)),
                Frame(10_000, Some(Periodic)),
                Frame(10_499, None),
                Frame(10_500, Some(Periodic)),
            ],
        },
        Case {
            name: "an encoder started long after connecting keyframes at the interval",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Frame(10_500, None),
                Frame(12_999, None),
                Frame(13_000, Some(Periodic)),
            ],
        },
        // --- requests
        Case {
            name: "a request is honoured at the next frame",
            connected_at: Some(0),
            steps: &[Frame(10_000, Some(EncoderStart)), Request, Frame(10_033, Some(Requested)), Frame(10_066, None)],
        },
        Case {
            name: "a changed PLI/FIR count is a request, an unchanged one is not",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Feedback(0),
                Frame(10_033, None),
                Feedback(2),
                Frame(10_300, Some(Requested)),
                Feedback(2),
                Frame(10_600, None),
                Feedback(3),
                Frame(10_900, Some(Requested)),
            ],
        },
        Case {
            name: "requests counted before the first frame are a request (the count starts at zero)",
            connected_at: Some(0),
            steps: &[Feedback(5), Frame(10_000, Some(Requested)), Feedback(5), Frame(10_300, None)],
        },
        Case {
            name: "requests inside the spacing are coalesced into one, deferred not dropped",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Request,
                Frame(10_033, Some(Requested)),
                Request,
                Frame(10_066, None),
                Request,
                Feedback(1),
                Frame(10_100, None),
                Frame(10_232, None),
                // 200 ms after the honoured request: the three are one keyframe.
                Frame(10_233, Some(Requested)),
                Frame(10_266, None),
                Frame(10_500, None),
            ],
        },
        Case {
            name: "a requested keyframe restarts the periodic count",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Request,
                Frame(12_000, Some(Requested)),
                Frame(13_000, None),
                Frame(14_999, None),
                Frame(15_000, Some(Periodic)),
            ],
        },
        Case {
            name: "the spacing is between requests: one right after a periodic keyframe is honoured",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Request,
                Frame(10_033, Some(Requested)),
                Frame(13_033, Some(Periodic)),
                Request,
                Frame(13_066, Some(Requested)),
            ],
        },
        Case {
            name: "a deferred request still comes after a new encoder's first keyframe",
            connected_at: Some(0),
            steps: &[
                Frame(10_000, Some(EncoderStart)),
                Request,
                Frame(10_033, Some(Requested)),
                Request,
                EncoderStarted,
                Frame(10_066, Some(EncoderStart)),
                Frame(10_200, None),
                Frame(10_233, Some(Requested)),
            ],
        },
    ];

    fn run(mut policy: KeyframePolicy, case: &Case) {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let connected_at = case.connected_at.map(at);
        for (i, step) in case.steps.iter().enumerate() {
            match *step {
                Frame(ms, want) => {
                    assert_eq!(policy.on_frame(at(ms), connected_at), want, "{}: step {i} ({step:?})", case.name)
                }
                Request => policy.on_request(),
                Feedback(count) => policy.on_feedback_count(count),
                EncoderStarted => policy.on_encoder_started(),
            }
        }
    }

    #[test]
    fn rules() {
        for case in CASES {
            run(policy(), case);
        }
    }

    #[test]
    fn spacing_is_configurable() {
        run(
            policy().with_min_request_spacing(Duration::ZERO),
            &Case {
                name: "no spacing: every request is a keyframe",
                connected_at: Some(0),
                steps: &[
                    Frame(10_000, Some(EncoderStart)),
                    Request,
                    Frame(10_033, Some(Requested)),
                    Request,
                    Frame(10_066, Some(Requested)),
                    Frame(10_100, None),
                ],
            },
        );
        run(
            policy().with_min_request_spacing(Duration::from_secs(1)),
            &Case {
                name: "1 s spacing",
                connected_at: Some(0),
                steps: &[
                    Frame(10_000, Some(EncoderStart)),
                    Request,
                    Frame(10_033, Some(Requested)),
                    Request,
                    Frame(10_500, None),
                    Frame(11_033, Some(Requested)),
                ],
            },
        );
    }

    #[test]
    fn time_going_backwards_is_not_a_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut p = policy();
        assert_eq!(p.on_frame(t0, Some(t0)), Some(EncoderStart));
        p.on_request();
        assert_eq!(p.on_frame(t0 - Duration::from_secs(1), Some(t0)), Some(Requested));
        p.on_request();
        assert_eq!(p.on_frame(t0 - Duration::from_secs(2), Some(t0)), None);
    }
}
