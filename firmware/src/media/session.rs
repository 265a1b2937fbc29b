//! [`MediaSession`]: owns the webrtc-rs peer connection, its local tracks and the tasks that feed them
//! (microphone → echo canceller → Opus → RTP on the audio threads of `audio_io`; camera feed →
//! GStreamer encoder → RTP) and drain the remote tracks (RTP → jitter buffer → speaker; RTP → GStreamer
//! decoder → latest frame), plus negotiation (offer/answer, re-offers), feeding the keyframe policy
//! (`video::KeyframePolicy`) and the video bitrate following REMB and loss reports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sdp::extmap::AUDIO_LEVEL_URI;
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::audio::{OpusEncoder, FRAME_SAMPLES, SILENCE_DBFS};
use super::audio_io::{AudioIo, AudioIoShared, EncodedAudio, PlayoutObserver, ENCODED_QUEUE};
use super::bitrate::BitrateController;
use super::dtmf::{EventReceiver, EventSender, ToneDetector};
use super::echo::AudioProcessor;
use super::mixer::Mixer;
use super::rtcp::{FeedbackCounters, FeedbackInterceptor};
use super::rtt_floor::{RttFloor, RTT_FLOOR_SLOT};
use super::video::{EncoderCounters, EncoderSettings, GstRegistry, KeyframePolicy, VideoDecoder, VideoEncoder};
use super::wire::{WireCounter, WireCounters, WIRE_SLOT};
use super::{DtmfKind, MediaConfig, MediaError, MediaEvent, MediaStats, RemoteStreamStats, VideoCodec};
use crate::calling::MediaKind;
use crate::devices::CameraFeed;
use crate::frame::{read_frame_counter, VideoFrame};
use std::collections::HashMap;

const OPUS_PT: u8 = 111;
const H264_PT: u8 = 102;
/// H.264 baseline (42001f) besides constrained baseline (42e01f): browsers list it first, and an answer must name
/// the far end's first usable H.264 format (see `sdp::normalize_offer`); our constrained-baseline stream is valid
/// baseline.
const H264_BASELINE_PT: u8 = 100;
const VP8_PT: u8 = 96;
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const H264_BASELINE_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f";
/// RFC 4733 telephone-events at 8 kHz, what every SIP phone and PSTN gateway has. Only one rate is registered:
/// webrtc-rs 0.21 matches telephone-event formats without their clock rate, and two registered rates make an offer
/// name one payload type twice (seen: `m=audio ... 111 110 110`), which foreign ends refuse. An offer at 48 kHz
/// (browsers list both) is answered at the offer's rate, as webrtc-rs keeps the far end's format.
const TELEPHONE_EVENT_PT: u8 = 101;
const EVENT_CAPACITY: usize = 64;
const VIDEO_RTP_QUEUE: usize = 512;
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Packets louder than -50 dBov are flagged as voice in the audio level extension (its V bit; Janus relies on the
/// level itself, averaged over a window).
const SPEECH_LEVEL: u8 = 50;
/// After this long without a packet from the microphone, encoded silence is sent instead.
const MIC_SILENCE_AFTER: Duration = Duration::from_millis(60);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// While remote video is not yet decoded, ask the far end for a keyframe this often.
const REMOTE_PLI_PERIOD: Duration = Duration::from_secs(1);
/// ICE with nothing from the far end for this long: the peer connection is Disconnected (media may come
/// back; the call goes on).
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(5);
/// ... and for this long more: Failed, which ends the call (500, media failed). webrtc-rs's 25 s made a
/// call outlive a 30 s network outage by a hair, silent for all of it; 15 s of silence in all is as long as
/// a caller at a door waits, and a short outage (a Wi-Fi roam) still passes.
const ICE_FAILED_AFTER: Duration = Duration::from_secs(10);
/// Least time between two PLIs for lost packets: a keyframe is several times a frame's size, and one
/// answers every loss before it arrives (the sender coalesces requests inside 200 ms likewise).
const LOSS_PLI_SPACING: Duration = Duration::from_millis(300);

/// What negotiation settled for our sending side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Negotiated {
    audio_pt: Option<u8>,
    /// The id of the audio level header extension, when the far end negotiated it (plain SIP endpoints do not:
    /// a packet carrying an extension that was not negotiated is dropped by webrtc-rs).
    audio_level_id: Option<u8>,
    /// The telephone-event payload type and its clock rate (RFC 4733) we send with, when negotiated.
    telephone_event: Option<(u8, u32)>,
    /// Every telephone-event payload type negotiated (what the far end may send).
    telephone_event_pts: [Option<u8>; 2],
    video: Option<(VideoCodec, u8)>,
}

#[derive(Default)]
struct Mutable {
    negotiated: Negotiated,
    connected_at: Option<Instant>,
    last_audio_at: Option<Instant>,
    max_audio_gap: Duration,
    remote_audio_level_dbfs: Option<f32>,
    last_remote_frame: Option<VideoFrame>,
    last_remote_frame_counter: Option<u32>,
    /// When the last new test-pattern counters were decoded (for the glass-to-glass latency benchmark).
    decoded_counters: heapless::HistoryBuf<DecodedCounter, DECODED_COUNTERS>,
    first_remote_frame_at: Option<Instant>,
    remote_video_codec: Option<VideoCodec>,
    video_encoder: Option<String>,
    remote_video_track: Option<Arc<dyn TrackRemote>>,
    /// Each remote stream by SSRC (bounded by `MAX_REMOTE_STREAMS`).
    remote_streams: HashMap<u32, RemoteStream>,
    /// The mid of each remote SSRC, from the far end's last offer (a group call's subscription).
    ssrc_mids: HashMap<u32, String>,
    tasks: Vec<JoinHandle<()>>,
}

/// What one remote stream delivered.
struct RemoteStream {
    kind: MediaKind,
    packets: u64,
    bytes: u64,
    frames_decoded: u64,
    last_frame: Option<VideoFrame>,
    last_frame_counter: Option<u32>,
    first_frame_at: Option<Instant>,
}

/// Decoded test-pattern counters a session remembers (4 s at 30 fps).
pub const DECODED_COUNTERS: usize = 128;

/// A decoded remote frame carrying a test-pattern counter (`crate::frame::read_frame_counter`), and when the
/// decoder handed it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedCounter {
    /// The counter read from the picture.
    pub counter: u32,
    /// When it was decoded.
    pub decoded_at: Instant,
}

/// Remote streams one session keeps figures of (a room's members' audio and video, with room to spare).
const MAX_REMOTE_STREAMS: usize = 64;

impl Mutable {
    /// The record of a remote stream, created on its first packet (`None` past the bound).
    fn remote_stream(&mut self, ssrc: u32, kind: MediaKind) -> Option<&mut RemoteStream> {
        if !self.remote_streams.contains_key(&ssrc) && self.remote_streams.len() >= MAX_REMOTE_STREAMS {
            return None;
        }
        Some(self.remote_streams.entry(ssrc).or_insert_with(|| RemoteStream {
            kind,
            packets: 0,
            bytes: 0,
            frames_decoded: 0,
            last_frame: None,
            last_frame_counter: None,
            first_frame_at: None,
        }))
    }
}

/// State shared by the session handle, the event handler and the tasks.
struct Shared {
    config: MediaConfig,
    events: broadcast::Sender<MediaEvent>,
    state: Mutex<Mutable>,
    connected: AtomicBool,
    closed: AtomicBool,
    audio_muted: AtomicBool,
    video_enabled: AtomicBool,
    keyframe_requested: AtomicBool,
    wake_video: Notify,
    gathering: watch::Sender<RTCIceGatheringState>,
    feedback: Arc<FeedbackCounters>,
    encoder_counters: Arc<EncoderCounters>,
    /// Packets of ours that left for the transport (counted at the wire-most interceptor).
    wire: Arc<WireCounters>,
    /// Digits waiting to go out as telephone-events (created at the negotiated clock rate).
    dtmf_out: Mutex<Option<EventSender>>,
    /// In-band DTMF detection on what is played (`DtmfConfig::detect_in_band`).
    tone_detector: Option<Mutex<ToneDetector>>,
    audio_packets_received: AtomicU64,
    video_packets_received: AtomicU64,
    video_frames_decoded: AtomicU64,
    video_frames_intact: AtomicU64,
    video_ssrc: u32,
    audio: Arc<AudioIoShared>,
    audio_io: Mutex<Option<AudioIo>>,
    audio_capture_to_send_us: AtomicU64,
    video_bitrate_kbps: AtomicU64,
}

/// Meters what the speaker plays into the session's remote level and events.
struct LevelObserver {
    shared: std::sync::Weak<Shared>,
}

impl PlayoutObserver for LevelObserver {
    fn level(&self, dbfs: f32) {
        let Some(shared) = self.shared.upgrade() else { return };
        if !shared.connected.load(Ordering::Relaxed) {
            return;
        }
        shared.lock().remote_audio_level_dbfs = Some(dbfs);
        shared.emit(MediaEvent::RemoteAudioLevel { dbfs });
    }

    fn frame(&self, pcm: &[i16]) {
        let Some(shared) = self.shared.upgrade() else { return };
        let Some(detector) = &shared.tone_detector else { return };
        for digit in lock(detector).push(pcm) {
            log::debug!("DTMF digit detected in the audio");
            shared.emit(MediaEvent::Dtmf { digit, kind: DtmfKind::InBand });
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        lock(&self.state)
    }

    fn emit(&self, event: MediaEvent) {
        let _ = self.events.send(event);
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut);
        let mut state = self.lock();
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(handle);
    }
}

struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        log::debug!("ICE gathering state: {state}");
        self.shared.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        log::info!("peer connection state: {state}");
        let shared = &self.shared;
        match state {
            RTCPeerConnectionState::Connected => {
                {
                    let mut st = shared.lock();
                    st.connected_at.get_or_insert_with(Instant::now);
                    st.last_audio_at = None;
                }
                shared.connected.store(true, Ordering::SeqCst);
                shared.keyframe_requested.store(true, Ordering::SeqCst);
                shared.wake_video.notify_one();
                shared.emit(MediaEvent::Connected);
            }
            RTCPeerConnectionState::Disconnected => {
                shared.connected.store(false, Ordering::SeqCst);
                shared.lock().last_audio_at = None;
                shared.emit(MediaEvent::Disconnected);
            }
            RTCPeerConnectionState::Failed => {
                shared.connected.store(false, Ordering::SeqCst);
                shared.lock().last_audio_at = None;
                shared.emit(MediaEvent::Failed("peer connection failed".into()));
            }
            RTCPeerConnectionState::Closed => {
                shared.connected.store(false, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        log::info!("remote {kind} track {}", track.track_id().await);
        let shared = Arc::clone(&self.shared);
        match kind {
            RtpCodecKind::Audio => self.shared.spawn(remote_audio_task(shared, track)),
            RtpCodecKind::Video => {
                shared.lock().remote_video_track = Some(Arc::clone(&track));
                self.shared.spawn(remote_video_task(shared, track));
            }
            _ => {}
        }
    }
}

/// One WebRTC media session (one peer connection). Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct MediaSession {
    inner: Arc<Inner>,
}

struct Inner {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    /// `None` in a receive-only session.
    audio_sender: Option<Arc<dyn RtpSender>>,
    video_sender: Option<Arc<dyn RtpSender>>,
}

/// What a session sends and where its remote audio goes.
enum Role {
    /// Microphone and camera out, remote audio to its own speaker (a 1:1 call, a room's publisher).
    SendReceive,
    /// Nothing out; remote audio mixed into another session's speaker (a room's subscription).
    ReceiveOnly(Arc<AudioIoShared>),
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.shared.lock().tasks.drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("connected", &self.inner.shared.connected.load(Ordering::Relaxed))
            .field("closed", &self.inner.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [("ccm", "fir"), ("nack", ""), ("nack", "pli")]
        .into_iter()
        .map(|(typ, parameter)| RTCPFeedback { typ: typ.to_owned(), parameter: parameter.to_owned() })
        .collect()
}

/// The formats of a codec, preferred first: H.264 constrained baseline, then baseline; VP8.
fn video_codec_parameters(codec: VideoCodec) -> Vec<RTCRtpCodecParameters> {
    let formats: &[(u8, &str)] = match codec {
        VideoCodec::H264 => &[(H264_PT, H264_FMTP), (H264_BASELINE_PT, H264_BASELINE_FMTP)],
        VideoCodec::Vp8 => &[(VP8_PT, "")],
    };
    formats
        .iter()
        .map(|(payload_type, fmtp)| RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: codec.mime_type().to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: (*fmtp).to_owned(),
                rtcp_feedback: video_feedback(),
            },
            payload_type: *payload_type,
        })
        .collect()
}

fn telephone_event_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
            clock_rate: 8_000,
            channels: 0,
            sdp_fmtp_line: "0-15".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: TELEPHONE_EVENT_PT,
    }
}

fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PT,
    }
}

fn dedup(codecs: &[VideoCodec]) -> Vec<VideoCodec> {
    let mut out: Vec<VideoCodec> = Vec::new();
    for codec in codecs {
        if !out.contains(codec) {
            out.push(*codec);
        }
    }
    out
}

fn validate(config: &MediaConfig) -> Result<(), MediaError> {
    if let Some(v) = &config.video {
        if v.width < crate::frame::MIN_WIDTH || v.height < crate::frame::MIN_HEIGHT {
            return Err(MediaError::Config(format!(
                "video size {}x{} is below the {}x{} minimum",
                v.width,
                v.height,
                crate::frame::MIN_WIDTH,
                crate::frame::MIN_HEIGHT
            )));
        }
        if v.width % 2 != 0 || v.height % 2 != 0 {
            return Err(MediaError::Config(format!("video size {}x{} must be even", v.width, v.height)));
        }
        if v.fps == 0 || v.fps > 120 {
            return Err(MediaError::Config(format!("video fps {} out of 1..=120", v.fps)));
        }
        if v.codecs.is_empty() {
            return Err(MediaError::Config("no video codec configured".into()));
        }
    }
    if config.keyframe_interval.is_zero() || config.startup_keyframe_period.is_zero() {
        return Err(MediaError::Config("keyframe intervals must be non-zero".into()));
    }
    Ok(())
}

fn local_track(kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "callbox".to_owned(),
        format!("callbox-{kind}"),
        format!("callbox-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    )))
}

impl MediaSession {
    /// Builds the peer connection (UDP bound on `config.bind_ip`, mDNS off), adds the audio track and,
    /// if configured, the video track, and starts the media tasks (they send once connected).
    pub async fn new(config: MediaConfig) -> Result<MediaSession, MediaError> {
        Self::build(config, Role::SendReceive).await
    }

    /// A session that only receives (a group call's subscription: Janus offers the members' streams): no
    /// microphone, camera or speaker of its own; its remote audio is mixed into `speaker_of`'s speaker, so one
    /// sound card plays every member and the echo canceller hears all of them. Remote video is decoded per
    /// stream (`remote_video_of`).
    pub async fn new_receiver(config: MediaConfig, speaker_of: &MediaSession) -> Result<MediaSession, MediaError> {
        Self::build(config, Role::ReceiveOnly(Arc::clone(&speaker_of.inner.shared.audio))).await
    }

    async fn build(config: MediaConfig, role: Role) -> Result<MediaSession, MediaError> {
        validate(&config)?;
        if config.video.is_some() {
            super::video::init_gstreamer()?;
        }
        let mut media_engine = MediaEngine::default();
        if let Some(video) = &config.video {
            for parameters in dedup(&video.codecs).into_iter().flat_map(video_codec_parameters) {
                media_engine
                    .register_codec(parameters, RtpCodecKind::Video)
                    .map_err(MediaError::webrtc("register video codec"))?;
            }
        }
        media_engine.register_codec(opus_codec(), RtpCodecKind::Audio).map_err(MediaError::webrtc("register opus"))?;
        media_engine
            .register_codec(telephone_event_codec(), RtpCodecKind::Audio)
            .map_err(MediaError::webrtc("register telephone-event"))?;
        media_engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.to_string() },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(MediaError::webrtc("register the audio level extension"))?;
        let video_ssrc = rand::random::<u32>();
        let audio_ssrc = rand::random::<u32>();
        let feedback = Arc::new(FeedbackCounters::default());
        let wire = Arc::new(WireCounters::new(audio_ssrc, video_ssrc));
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(MediaError::webrtc("register interceptors"))?
            .with(Slot::from(14_000), FeedbackInterceptor::new(Arc::clone(&feedback)))
            .with(Slot::from(RTT_FLOOR_SLOT), RttFloor::default())
            .with(Slot::from(WIRE_SLOT), WireCounter::new(Arc::clone(&wire)));
        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_timeouts(Some(ICE_DISCONNECTED_AFTER), Some(ICE_FAILED_AFTER), None)
            .build();

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (gathering, _) = watch::channel(RTCIceGatheringState::New);
        let (audio, processor) = match &role {
            Role::SendReceive => {
                let mixer = Mixer::new(config.audio.playout.clone())?;
                let processor = match &config.audio.processing {
                    Some(p) => Some(AudioProcessor::new(p)?.split()),
                    None => None,
                };
                (AudioIoShared::new(mixer, config.max_buffered_pcm_samples), processor)
            }
            Role::ReceiveOnly(audio) => (Arc::clone(audio), None),
        };
        let start_kbps = config.video.as_ref().map(|v| u64::from(v.bitrate_kbps)).unwrap_or(0);
        let tone_detector = (config.dtmf.detect_in_band && matches!(role, Role::SendReceive))
            .then(|| Mutex::new(ToneDetector::new(super::audio::SAMPLE_RATE)));
        let shared = Arc::new(Shared {
            audio: Arc::clone(&audio),
            audio_io: Mutex::new(None),
            audio_capture_to_send_us: AtomicU64::new(0),
            video_bitrate_kbps: AtomicU64::new(start_kbps),
            config,
            events,
            state: Mutex::new(Mutable::default()),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            audio_muted: AtomicBool::new(false),
            video_enabled: AtomicBool::new(true),
            keyframe_requested: AtomicBool::new(false),
            wake_video: Notify::new(),
            gathering,
            feedback,
            encoder_counters: Arc::new(EncoderCounters::default()),
            wire,
            dtmf_out: Mutex::new(None),
            tone_detector,
            audio_packets_received: AtomicU64::new(0),
            video_packets_received: AtomicU64::new(0),
            video_frames_decoded: AtomicU64::new(0),
            video_frames_intact: AtomicU64::new(0),
            video_ssrc,
        });

        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Handler { shared: Arc::clone(&shared) }))
            .with_udp_addrs(vec![SocketAddr::new(shared.config.bind_ip, 0)])
            .build()
            .await
            .map_err(MediaError::webrtc("build peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        if matches!(role, Role::ReceiveOnly(_)) {
            // Transceivers come from the far end's offer; nothing of ours to send.
            return Ok(MediaSession { inner: Arc::new(Inner { pc, shared, audio_sender: None, video_sender: None }) });
        }
        let audio_track = local_track(RtpCodecKind::Audio, opus_codec().rtp_codec, audio_ssrc);
        let audio_sender = pc
            .add_track(Arc::clone(&audio_track) as Arc<dyn TrackLocal>)
            .await
            .map_err(MediaError::webrtc("add audio track"))?;
        // Opus, then the telephone-events that ride in the same stream.
        let audio_preferences: Vec<RTCRtpCodecParameters> = vec![opus_codec(), telephone_event_codec()];
        set_codec_preferences(&pc, &audio_sender, audio_preferences, "set audio codec preferences").await?;
        let mut video_sender = None;
        if let Some(video) = &shared.config.video {
            // The track's own codec is the preferred one; the codec actually sent is read back from
            // the sender's negotiated parameters (any negotiated payload type is accepted).
            let first = video.codecs.first().copied().unwrap_or(VideoCodec::H264);
            let Some(track_codec) = video_codec_parameters(first).into_iter().next() else {
                return Err(MediaError::Config("no video codec configured".into()));
            };
            let track = local_track(RtpCodecKind::Video, track_codec.rtp_codec, video_ssrc);
            let sender = pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(MediaError::webrtc("add video track"))?;
            // The track's codec alone would restrict the offer to that codec: offer every
            // configured codec, in preference order, through the transceiver's preferences.
            let preferences: Vec<RTCRtpCodecParameters> =
                dedup(&video.codecs).into_iter().flat_map(video_codec_parameters).collect();
            set_codec_preferences(&pc, &sender, preferences, "set video codec preferences").await?;
            let (rtp_tx, rtp_rx) = mpsc::channel::<Bytes>(VIDEO_RTP_QUEUE);
            shared.spawn(video_source_task(Arc::clone(&shared), rtp_tx));
            shared.spawn(video_rtp_task(Arc::clone(&shared), Arc::clone(&track), rtp_rx));
            shared.spawn(video_feedback_task(Arc::clone(&shared), track));
            video_sender = Some(sender);
        }
        let (encoded_tx, encoded_rx) = mpsc::channel::<EncodedAudio>(ENCODED_QUEUE);
        let (render, capture) = match processor {
            Some((r, c)) => (Some(r), Some(c)),
            None => (None, None),
        };
        let observer = Arc::new(LevelObserver { shared: Arc::downgrade(&shared) });
        let audio_io = AudioIo::start(
            audio,
            shared.config.devices.clone(),
            shared.config.microphone.clone(),
            shared.config.speaker.clone(),
            &shared.config.audio,
            capture,
            render,
            encoded_tx,
            observer,
        )?;
        *lock(&shared.audio_io) = Some(audio_io);
        shared.spawn(audio_rtp_task(Arc::clone(&shared), audio_track, audio_ssrc, encoded_rx));

        Ok(MediaSession { inner: Arc::new(Inner { pc, shared, audio_sender: Some(audio_sender), video_sender }) })
    }

    fn check_open(&self) -> Result<(), MediaError> {
        if self.inner.shared.closed.load(Ordering::SeqCst) {
            Err(MediaError::Closed)
        } else {
            Ok(())
        }
    }

    async fn local_sdp_after_gathering(&self) -> Result<String, MediaError> {
        let timeout = self.inner.shared.config.gather_timeout;
        let mut rx = self.inner.shared.gathering.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == RTCIceGatheringState::Complete))
            .await
            .map_err(|_| MediaError::GatherTimeout(timeout))?
            .map_err(|_| MediaError::Closed)?;
        self.inner
            .pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| MediaError::Sdp { what: "local", detail: "no local description after gathering".into() })
    }

    /// Creates our offer and returns it as complete SDP with candidates inline (non-trickle).
    pub async fn create_offer(&self) -> Result<String, MediaError> {
        self.check_open()?;
        let offer = self.inner.pc.create_offer(None).await.map_err(MediaError::webrtc("create offer"))?;
        self.inner.pc.set_local_description(offer).await.map_err(MediaError::webrtc("set local offer"))?;
        self.local_sdp_after_gathering().await
    }

    /// Applies the far end's answer to our offer; the video encoder follows the answer's codec.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), MediaError> {
        self.check_open()?;
        let desc = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| MediaError::Sdp { what: "answer", detail: e.to_string() })?;
        self.inner.pc.set_remote_description(desc).await.map_err(MediaError::webrtc("set remote answer"))?;
        self.update_negotiated().await;
        Ok(())
    }

    /// Applies the far end's offer (first offer or re-offer on an established session) and returns
    /// our complete answer SDP.
    pub async fn accept_offer(&self, sdp: &str) -> Result<String, MediaError> {
        self.check_open()?;
        let ssrc_mids = super::sdp::ssrc_mids(sdp);
        let desc = RTCSessionDescription::offer(super::sdp::normalize_offer(sdp))
            .map_err(|e| MediaError::Sdp { what: "offer", detail: e.to_string() })?;
        self.inner.pc.set_remote_description(desc).await.map_err(MediaError::webrtc("set remote offer"))?;
        let answer = self.inner.pc.create_answer(None).await.map_err(MediaError::webrtc("create answer"))?;
        self.inner.pc.set_local_description(answer).await.map_err(MediaError::webrtc("set local answer"))?;
        let answer = self.local_sdp_after_gathering().await?;
        {
            let mut st = self.inner.shared.lock();
            // Streams the new offer no longer announces are gone (a renegotiated subscription drops them).
            if !ssrc_mids.is_empty() {
                st.remote_streams.retain(|ssrc, _| ssrc_mids.contains_key(ssrc));
            }
            st.ssrc_mids = ssrc_mids;
        }
        self.update_negotiated().await;
        Ok(answer)
    }

    async fn update_negotiated(&self) {
        let mut audio_pt = None;
        let mut audio_level_id = None;
        let mut telephone_event = None;
        let mut telephone_event_pts = [None; 2];
        if let Some(sender) = &self.inner.audio_sender {
            match sender.get_parameters().await {
                Ok(p) => {
                    let codecs = &p.rtp_parameters.codecs;
                    audio_pt = codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
                        .map(|c| c.payload_type);
                    // Opus's own clock first (one clock on the stream), else whichever rate was negotiated.
                    let events: Vec<(u8, u32)> = codecs
                        .iter()
                        .filter(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_TELEPHONE_EVENT))
                        .map(|c| (c.payload_type, c.rtp_codec.clock_rate))
                        .collect();
                    telephone_event =
                        events.iter().find(|(_, rate)| *rate == 48_000).or_else(|| events.first()).copied();
                    for (slot, (pt, _)) in telephone_event_pts.iter_mut().zip(&events) {
                        *slot = Some(*pt);
                    }
                    audio_level_id = p
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .find(|e| e.uri == AUDIO_LEVEL_URI)
                        .and_then(|e| u8::try_from(e.id).ok());
                }
                Err(e) => log::warn!("cannot read audio sender parameters: {e}"),
            }
        }
        let mut video = None;
        if let Some(sender) = &self.inner.video_sender {
            match sender.get_parameters().await {
                Ok(p) => {
                    let offered: Vec<String> = p
                        .rtp_parameters
                        .codecs
                        .iter()
                        .map(|c| format!("{}/{}", c.rtp_codec.mime_type, c.payload_type))
                        .collect();
                    log::debug!("video sender codecs after negotiation: {offered:?}");
                    let allowed = self.inner.shared.config.video.as_ref().map(|v| v.codecs.clone()).unwrap_or_default();
                    video = p.rtp_parameters.codecs.iter().find_map(|c| {
                        let codec = VideoCodec::from_mime_type(&c.rtp_codec.mime_type)?;
                        if !allowed.contains(&codec) {
                            return None;
                        }
                        if codec == VideoCodec::H264 && !super::sdp::h264_fmtp_usable(&c.rtp_codec.sdp_fmtp_line) {
                            return None;
                        }
                        Some((codec, c.payload_type))
                    });
                }
                Err(e) => log::warn!("cannot read video sender parameters: {e}"),
            }
        }
        let negotiated = Negotiated { audio_pt, audio_level_id, telephone_event, telephone_event_pts, video };
        log::info!("negotiated: {negotiated:?}");
        self.inner.shared.wire.set_telephone_event_pt(telephone_event.map(|(pt, _)| pt));
        self.inner.shared.lock().negotiated = negotiated;
        self.inner.shared.wake_video.notify_one();
    }

    /// Sends a DTMF digit as RFC 4733 telephone-events in the audio stream (queued behind digits still being sent,
    /// 100 ms each with 60 ms between). Fails when the far end did not negotiate telephone-event: the caller then
    /// signals the digit another way (SIP INFO).
    pub fn send_dtmf(&self, digit: char) -> Result<(), MediaError> {
        self.check_open()?;
        let Some((_, rate)) = self.inner.shared.lock().negotiated.telephone_event else {
            return Err(MediaError::Dtmf("the far end did not negotiate telephone-event".into()));
        };
        let mut out = lock(&self.inner.shared.dtmf_out);
        let sender = match out.as_mut() {
            Some(s) if s.clock_rate() == rate => s,
            _ => out.insert(EventSender::new(rate)),
        };
        sender.push(digit).map_err(|e| MediaError::Dtmf(e.to_string()))
    }

    /// Whether telephone-events were negotiated (digits go in the audio stream).
    pub fn has_telephone_events(&self) -> bool {
        self.inner.shared.lock().negotiated.telephone_event.is_some()
    }

    /// Stops (or resumes) sending the microphone: while muted, Opus-encoded silence is sent so the RTP
    /// stream and its timing stay continuous (SIP phones and Janus see no RTP timeout).
    pub fn set_audio_muted(&self, muted: bool) {
        self.inner.shared.audio_muted.store(muted, Ordering::SeqCst);
        self.inner.shared.audio.muted.store(muted, Ordering::SeqCst);
    }

    /// Mixes `tone` into the audio sent to the far end (replacing a tone still playing). It goes out with the
    /// microphone's next packets, muted or not.
    pub fn play_tone(&self, tone: super::CallTone) {
        let mut playing = self.inner.shared.audio.tone.lock().unwrap_or_else(|p| p.into_inner());
        *playing = Some(super::call_tone::TonePlayer::new(tone));
    }

    /// Stops or restarts sending video frames (a keyframe follows a restart).
    pub fn set_video_enabled(&self, on: bool) {
        let was = self.inner.shared.video_enabled.swap(on, Ordering::SeqCst);
        if on && !was {
            self.inner.shared.keyframe_requested.store(true, Ordering::SeqCst);
        }
        self.inner.shared.wake_video.notify_one();
    }

    /// Asks the far end for a keyframe (sends a PLI on the remote video stream).
    pub async fn request_remote_keyframe(&self) -> Result<(), MediaError> {
        self.check_open()?;
        let track = self.inner.shared.lock().remote_video_track.clone();
        match track {
            Some(track) => send_pli(&self.inner.shared, &track).await,
            None => Err(MediaError::Config("no remote video track yet".into())),
        }
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> MediaStats {
        let shared = &self.inner.shared;
        let playout = shared.audio.playout().stats();
        let st = shared.lock();
        MediaStats {
            video_bitrate_kbps: u32::try_from(shared.video_bitrate_kbps.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            audio_capture_to_send_ms: shared.audio_capture_to_send_us.load(Ordering::Relaxed) as f64 / 1000.0,
            audio_playout_delay_ms: shared.audio.playout_delay_ms.load(Ordering::Relaxed),
            audio_concealed_frames: playout.concealed,
            audio_fec_frames: playout.fec_recovered,
            audio_device_reopens: shared.audio.mic_reopens.load(Ordering::Relaxed)
                + shared.audio.speaker_reopens.load(Ordering::Relaxed),
            ice_connected: shared.connected.load(Ordering::Relaxed),
            video_codec: st.negotiated.video.map(|(c, _)| c),
            video_encoder: st.video_encoder.clone(),
            remote_video_codec: st.remote_video_codec,
            audio_packets_sent: shared.wire.audio_packets.load(Ordering::Relaxed),
            telephone_events_sent: shared.wire.telephone_events.load(Ordering::Relaxed),
            audio_packets_received: shared.audio_packets_received.load(Ordering::Relaxed),
            video_frames_sent: shared.encoder_counters.frames_encoded.load(Ordering::Relaxed),
            video_packets_sent: shared.wire.video_packets.load(Ordering::Relaxed),
            video_packets_received: shared.video_packets_received.load(Ordering::Relaxed),
            video_frames_decoded: shared.video_frames_decoded.load(Ordering::Relaxed),
            video_frames_intact: shared.video_frames_intact.load(Ordering::Relaxed),
            last_remote_frame_counter: st.last_remote_frame_counter,
            remote_audio_level_dbfs: st.remote_audio_level_dbfs.unwrap_or(SILENCE_DBFS),
            max_audio_gap_ms: u64::try_from(st.max_audio_gap.as_millis()).unwrap_or(u64::MAX),
            keyframes_sent: shared.encoder_counters.keyframes.load(Ordering::Relaxed),
            plis_received: shared.feedback.plis.load(Ordering::Relaxed),
            firs_received: shared.feedback.firs.load(Ordering::Relaxed),
            nacks_received: shared.feedback.nacks.load(Ordering::Relaxed),
            connected_at: st.connected_at,
            first_remote_frame_at: st.first_remote_frame_at,
        }
    }

    /// Resets `max_audio_gap_ms` (e.g. at the start of a measured interval).
    pub fn reset_max_audio_gap(&self) {
        self.inner.shared.lock().max_audio_gap = Duration::ZERO;
    }

    /// Subscribes to session events.
    pub fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.inner.shared.events.subscribe()
    }

    /// The latest decoded remote video frame (packed I420).
    pub fn last_remote_frame(&self) -> Option<VideoFrame> {
        self.inner.shared.lock().last_remote_frame.clone()
    }

    /// The last [`DECODED_COUNTERS`] remote frames whose test-pattern counter was read (each new counter once,
    /// the first time it decoded; any stream), oldest first.
    pub fn decoded_counters(&self) -> Vec<DecodedCounter> {
        self.inner.shared.lock().decoded_counters.oldest_ordered().copied().collect()
    }

    /// What each remote stream delivered, with its mid where the far end's offer named its SSRC.
    pub fn remote_streams(&self) -> Vec<RemoteStreamStats> {
        let st = self.inner.shared.lock();
        let mut out: Vec<RemoteStreamStats> = st
            .remote_streams
            .iter()
            .map(|(ssrc, s)| RemoteStreamStats {
                ssrc: *ssrc,
                mid: st.ssrc_mids.get(ssrc).cloned(),
                kind: s.kind,
                packets: s.packets,
                bytes: s.bytes,
                frames_decoded: s.frames_decoded,
                last_frame_counter: s.last_frame_counter,
                first_frame_at: s.first_frame_at,
            })
            .collect();
        out.sort_by_key(|s| s.ssrc);
        out
    }

    /// The frames decoded so far of the remote video stream with this mid (a group call's subscription), and its
    /// latest frame. Of several SSRCs announced for the mid, the one that decoded last started.
    pub fn remote_video_of(&self, mid: &str) -> Option<(u64, Option<VideoFrame>)> {
        let st = self.inner.shared.lock();
        st.ssrc_mids
            .iter()
            .filter(|(_, m)| m.as_str() == mid)
            .filter_map(|(ssrc, _)| st.remote_streams.get(ssrc))
            .max_by_key(|s| (s.first_frame_at, s.frames_decoded))
            .map(|s| (s.frames_decoded, s.last_frame.clone()))
    }

    /// Forgets what the streams of this mid delivered (the far end gave the mid to another source).
    pub fn forget_remote_mid(&self, mid: &str) {
        let mut st = self.inner.shared.lock();
        let ssrcs: Vec<u32> = st.ssrc_mids.iter().filter(|(_, m)| m.as_str() == mid).map(|(s, _)| *s).collect();
        for ssrc in ssrcs {
            st.remote_streams.remove(&ssrc);
        }
    }

    /// Drains the remote audio played so far (48 kHz mono PCM, bounded by `max_buffered_pcm_samples`).
    pub fn take_remote_audio(&self) -> Vec<i16> {
        self.inner.shared.audio.take_played()
    }

    /// Stops every task and pipeline and closes the peer connection. Idempotent.
    pub async fn close(&self) {
        let shared = &self.inner.shared;
        if shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        shared.connected.store(false, Ordering::SeqCst);
        let tasks: Vec<JoinHandle<()>> = {
            let mut st = shared.lock();
            st.remote_video_track = None;
            st.tasks.drain(..).collect()
        };
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let audio_io = lock(&shared.audio_io).take();
        if let Some(audio_io) = audio_io {
            audio_io.stop().await;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, self.inner.pc.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("peer connection close: {e}"),
            Err(_) => log::warn!("peer connection close timed out after {CLOSE_TIMEOUT:?}"),
        }
        shared.emit(MediaEvent::Closed);
    }
}

async fn send_pli(shared: &Shared, track: &Arc<dyn TrackRemote>) -> Result<(), MediaError> {
    let Some(media_ssrc) = track.ssrcs().await.first().copied() else {
        return Err(MediaError::Config("remote video track has no SSRC yet".into()));
    };
    let pli = PictureLossIndication { sender_ssrc: shared.video_ssrc, media_ssrc };
    track.write_rtcp(vec![Box::new(pli)]).await.map_err(MediaError::webrtc("send PLI"))
}

/// Sends the encoded packets of the capture thread as RTP (20 ms each, timestamps continuous even
/// while not connected, so the far end sees a clean stream).
async fn audio_rtp_task(
    shared: Arc<Shared>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mut encoded: mpsc::Receiver<EncodedAudio>,
) {
    let mut seq: u16 = rand::random();
    let mut timestamp: u32 = rand::random();
    let mut errors: u64 = 0;
    // Without a working microphone (absent, being reopened) encoded silence keeps the stream going at 20 ms,
    // so that Janus and SIP peers see no RTP timeout and the far end's jitter buffer no gap.
    let silence = match OpusEncoder::with_options(shared.config.audio.bitrate_bps, false, false)
        .and_then(|mut e| e.encode(&[0i16; FRAME_SAMPLES]).map(Bytes::copy_from_slice))
    {
        Ok(p) => p,
        Err(e) => {
            log::error!("audio sender stopped: {e}");
            return;
        }
    };
    let mut starving = false;
    loop {
        let wait = if starving { Duration::from_millis(20) } else { MIC_SILENCE_AFTER };
        let packet = match tokio::time::timeout(wait, encoded.recv()).await {
            Ok(Some(packet)) => {
                starving = false;
                packet
            }
            Ok(None) => break,
            Err(_) => {
                if !starving {
                    log::debug!("no microphone audio for {MIC_SILENCE_AFTER:?}: sending silence");
                }
                starving = true;
                EncodedAudio { payload: silence.clone(), captured_at: Instant::now(), level: 127 }
            }
        };
        timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);
        let negotiated = shared.lock().negotiated;
        let Some(pt) = negotiated.audio_pt else {
            continue;
        };
        if !shared.connected.load(Ordering::Relaxed) {
            continue;
        }
        // A digit being sent takes this frame's place (RFC 4733: the events ride in the audio stream's sequence
        // and timing; audio resumes between digits).
        let event = match negotiated.telephone_event {
            Some((event_pt, _)) => {
                lock(&shared.dtmf_out).as_mut().and_then(|s| s.next_frame(timestamp)).map(|e| (event_pt, e))
            }
            None => None,
        };
        let mut header = rtc::rtp::header::Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        };
        let payload = match event {
            Some((event_pt, e)) => {
                header.payload_type = event_pt;
                header.marker = e.marker;
                header.timestamp = e.timestamp;
                Bytes::copy_from_slice(&e.payload)
            }
            None => {
                // The level rides in the ssrc-audio-level header extension only where the far end negotiated it
                // (Janus's videoroom tells who is talking from it; plain SIP endpoints do not negotiate it, and
                // webrtc-rs drops a packet that carries an extension not negotiated).
                if let Some(id) = negotiated.audio_level_id {
                    let level =
                        AudioLevelExtension { level: packet.level.min(127), voice: packet.level < SPEECH_LEVEL };
                    match level.marshal() {
                        Ok(bytes) => {
                            if let Err(e) = header.set_extension(id, bytes.freeze()) {
                                log::debug!("audio level extension not set: {e}");
                            }
                        }
                        Err(e) => log::debug!("audio level extension not encoded: {e}"),
                    }
                }
                packet.payload
            }
        };
        seq = seq.wrapping_add(1);
        match tokio::time::timeout(WRITE_TIMEOUT, track.write_rtp(rtc::rtp::Packet { header, payload })).await {
            Ok(Ok(())) => {
                let us = u64::try_from(packet.captured_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                shared.audio_capture_to_send_us.store(us, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                errors += 1;
                if errors.is_power_of_two() {
                    log::debug!("audio RTP write failed ({errors} so far): {e}");
                }
            }
            Err(_) => log::warn!("audio RTP write timed out"),
        }
    }
}

/// Sets the codec preferences of the transceiver that carries `sender` (a track's own codec alone would restrict
/// offers to that codec).
async fn set_codec_preferences(
    pc: &Arc<dyn PeerConnection>,
    sender: &Arc<dyn RtpSender>,
    preferences: Vec<RTCRtpCodecParameters>,
    op: &'static str,
) -> Result<(), MediaError> {
    for transceiver in pc.get_transceivers().await {
        if matches!(transceiver.sender().await, Ok(Some(s)) if s.id() == sender.id()) {
            transceiver.set_codec_preferences(preferences.clone()).await.map_err(MediaError::webrtc(op))?;
        }
    }
    Ok(())
}

/// Locks `m`; a poisoned lock only means a panic elsewhere (the data behind these locks is plain counters, handles
/// and queues), so its data is taken as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits up to `period` for the session to wake the video task (settings changed).
async fn idle(shared: &Shared, period: Duration) {
    tokio::select! {
        _ = shared.wake_video.notified() => {}
        _ = tokio::time::sleep(period) => {}
    }
}

async fn video_source_task(shared: Arc<Shared>, rtp_tx: mpsc::Sender<Bytes>) {
    let Some(video) = shared.config.video.clone() else {
        return;
    };
    let request = video.request();
    let mut feed: Option<CameraFeed> = None;
    let mut camera_failures: u32 = 0;
    let mut encoder: Option<(VideoEncoder, u8)> = None;
    let mut failed_for: Option<(VideoCodec, u8, crate::devices::CaptureFormat)> = None;
    let mut bitrate = BitrateController::new(video.bitrate_kbps, video.min_bitrate_kbps, video.max_bitrate_kbps);
    let mut congestion_seen = shared.feedback.congestion();
    let mut keyframes = KeyframePolicy::new(
        shared.config.keyframe_interval,
        shared.config.startup_keyframe_window,
        shared.config.startup_keyframe_period,
    );
    let dropped = Arc::new(AtomicU16::new(0));
    loop {
        let connected = shared.connected.load(Ordering::Relaxed);
        let enabled = shared.video_enabled.load(Ordering::Relaxed);
        if !connected || !enabled {
            if !enabled && feed.take().is_some() {
                log::info!("camera released (video stopped)");
            }
            idle(&shared, Duration::from_millis(200)).await;
            continue;
        }
        if feed.is_none() {
            match shared.config.devices.camera_feed(shared.config.camera.as_deref(), &request) {
                Ok(f) => {
                    camera_failures = 0;
                    feed = Some(f);
                }
                Err(e) => {
                    if camera_failures.is_power_of_two() || camera_failures == 0 {
                        log::warn!("no camera for the call: {e}");
                    }
                    camera_failures = camera_failures.saturating_add(1);
                    idle(&shared, Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(camera) = feed.as_mut() else { continue };
        // The feed reopens a failing camera itself; waiting is bounded so settings changes are seen.
        let frame = tokio::select! {
            f = camera.next() => f,
            _ = shared.wake_video.notified() => continue,
            _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
        };
        let Some(frame) = frame else {
            feed = None;
            continue;
        };
        let (negotiated, connected_at) = {
            let st = shared.lock();
            (st.negotiated.video, st.connected_at)
        };
        // (Re)build the encoder when negotiation changed the codec or payload type, or the camera its format.
        let current = encoder.as_ref().map(|(e, pt)| (e.codec(), *pt, e.input_format()));
        let wanted = negotiated.map(|(codec, pt)| (codec, pt, frame.format));
        if current != wanted {
            encoder = None;
            shared.lock().video_encoder = None;
            if let Some((codec, pt, format)) = wanted {
                if failed_for != wanted {
                    let tx = rtp_tx.clone();
                    let dropped = Arc::clone(&dropped);
                    let settings = EncoderSettings {
                        codec,
                        output_size: Some((video.width, video.height)),
                        bitrate_kbps: bitrate.target_kbps(),
                        min_bitrate_kbps: video.min_bitrate_kbps,
                        max_bitrate_kbps: video.max_bitrate_kbps,
                        pt,
                        ssrc: shared.video_ssrc,
                    };
                    let built = VideoEncoder::start_for_capture(
                        format,
                        &settings,
                        &video.codec_policy,
                        &GstRegistry,
                        Arc::clone(&shared.encoder_counters),
                        move |rtp| {
                            if tx.try_send(rtp).is_err() {
                                let n = dropped.fetch_add(1, Ordering::Relaxed);
                                if n.is_multiple_of(100) {
                                    log::warn!("video RTP queue full, dropping packets");
                                }
                            }
                        },
                    );
                    match built {
                        Ok(e) => {
                            shared.lock().video_encoder = Some(e.element().to_owned());
                            encoder = Some((e, pt));
                            failed_for = None;
                            keyframes.on_encoder_started();
                        }
                        Err(e) => {
                            log::error!("cannot start video encoder for {codec:?} from {format}: {e}");
                            shared.emit(MediaEvent::Failed(format!("video encoder: {e}")));
                            failed_for = wanted;
                        }
                    }
                }
            }
        }
        let Some((enc, _)) = encoder.as_mut() else {
            continue;
        };
        // Bitrate follows the receiver's estimate (REMB) and its loss reports.
        let congestion = shared.feedback.congestion();
        if congestion != congestion_seen {
            let mut target = None;
            if congestion.rembs != congestion_seen.rembs {
                if let Some(bps) = congestion.remb_bps {
                    target = bitrate.on_remb(bps).or(target);
                }
            }
            if congestion.loss_reports != congestion_seen.loss_reports {
                target = bitrate.on_loss_report(congestion.fraction_lost, Instant::now()).or(target);
            }
            congestion_seen = congestion;
            if let Some(kbps) = target {
                let applied = enc.set_bitrate(kbps);
                shared.video_bitrate_kbps.store(u64::from(applied), Ordering::Relaxed);
                log::debug!("video bitrate now {applied} kbit/s");
            }
        }
        // Keyframes (see `KeyframePolicy`): requested (connect, re-enable, PLI/FIR), a new encoder's first
        // frame, start-up burst, then periodic. PLI/FIR counted by the feedback interceptor are requests
        // too, whether or not the marked RTCP also reaches the local track's event stream.
        if shared.keyframe_requested.swap(false, Ordering::SeqCst) {
            keyframes.on_request();
        }
        keyframes.on_feedback_count(
            shared.feedback.plis.load(Ordering::Relaxed) + shared.feedback.firs.load(Ordering::Relaxed),
        );
        if keyframes.on_frame(Instant::now(), connected_at).is_some() {
            enc.force_keyframe();
        }
        if let Err(e) = enc.push_capture(&frame) {
            log::warn!("{e}");
            // A pipeline that failed is rebuilt (with the next element if this one keeps failing) at the next frame.
            if enc.error().is_some() {
                encoder = None;
                shared.lock().video_encoder = None;
            }
        }
    }
}

async fn video_rtp_task(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>, mut rtp_rx: mpsc::Receiver<Bytes>) {
    let mut seq: u16 = rand::random();
    let mut errors: u64 = 0;
    while let Some(raw) = rtp_rx.recv().await {
        let mut buf = raw;
        let mut packet = match rtc::rtp::Packet::unmarshal(&mut buf) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("encoder produced an unparsable RTP packet: {e}");
                continue;
            }
        };
        // Our own sequence numbering stays continuous across encoder rebuilds.
        packet.header.sequence_number = seq;
        packet.header.ssrc = shared.video_ssrc;
        seq = seq.wrapping_add(1);
        if !shared.connected.load(Ordering::Relaxed) {
            continue;
        }
        match tokio::time::timeout(WRITE_TIMEOUT, track.write_rtp(packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                errors += 1;
                if errors.is_power_of_two() {
                    log::debug!("video RTP write failed ({errors} so far): {e}");
                }
            }
            Err(_) => log::warn!("video RTP write timed out"),
        }
    }
}

/// Keyframe requests (PLI/FIR marked for delivery by the feedback interceptor) for our video.
async fn video_feedback_task(shared: Arc<Shared>, track: Arc<TrackLocalStaticRTP>) {
    while let Some(event) = track.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(packets) = event {
            log::debug!("keyframe request delivered ({} RTCP packets)", packets.len());
            shared.keyframe_requested.store(true, Ordering::SeqCst);
        }
    }
    log::debug!("local video track event stream ended");
}

async fn remote_audio_task(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let mut dtmf = EventReceiver::new();
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                // Telephone-events share the audio stream (RFC 4733): they are digits, not sound.
                let events = shared.lock().negotiated.telephone_event_pts;
                if events.contains(&Some(packet.header.payload_type)) {
                    if let Some(digit) = dtmf.on_packet(packet.header.timestamp, &packet.payload) {
                        log::debug!("DTMF digit received as a telephone-event");
                        shared.emit(MediaEvent::Dtmf { digit, kind: DtmfKind::TelephoneEvent });
                    }
                    continue;
                }
                shared.audio_packets_received.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if shared.connected.load(Ordering::Relaxed) {
                    let mut st = shared.lock();
                    if let Some(last) = st.last_audio_at {
                        let gap = now.duration_since(last);
                        if gap > st.max_audio_gap {
                            st.max_audio_gap = gap;
                        }
                    }
                    st.last_audio_at = Some(now);
                }
                if let Some(stream) = shared.lock().remote_stream(packet.header.ssrc, MediaKind::Audio) {
                    stream.packets += 1;
                    stream.bytes += packet.marshal_size() as u64;
                }
                let arrival = shared.audio.now();
                shared.audio.playout().push(
                    packet.header.ssrc,
                    packet.header.sequence_number,
                    packet.header.timestamp,
                    &packet.payload,
                    arrival,
                );
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => {}
        }
    }
    log::debug!("remote audio track ended");
}

async fn remote_video_task(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let mut decoder: Option<(VideoDecoder, u8)> = None;
    let mut failed_pt: Option<u8> = None;
    let mut switches = super::video::DecoderSwitches::new(super::video::DECODER_SWITCH_INTERVAL);
    let mut last_pli: Option<Instant> = None;
    // Keyframe requests of the decoder (a packet given up for lost) already seen, and whether one waits for
    // its PLI (at most one per `LOSS_PLI_SPACING`).
    let mut seen_requests = 0u64;
    let mut loss_pli_pending = false;
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => continue,
        };
        shared.video_packets_received.fetch_add(1, Ordering::Relaxed);
        let ssrc = packet.header.ssrc;
        let first_frame_seen = match shared.lock().remote_stream(ssrc, MediaKind::Video) {
            Some(stream) => {
                stream.packets += 1;
                stream.bytes += packet.marshal_size() as u64;
                stream.first_frame_at.is_some()
            }
            None => true,
        };
        let pt = packet.header.payload_type;
        if decoder.as_ref().map(|(_, p)| *p) != Some(pt) && failed_pt != Some(pt) {
            // A peer flipping payload types must not make us build a pipeline per packet.
            if !switches.allow(Instant::now()) {
                if switches.refused() % 1000 == 1 {
                    log::warn!("remote video switches payload types too often: packets of {pt} dropped");
                }
                continue;
            }
            decoder = None;
            let codec = track.codec(packet.header.ssrc).await.and_then(|c| VideoCodec::from_mime_type(&c.mime_type));
            let Some(codec) = codec else {
                log::warn!("remote video payload type {pt} is not a codec we decode");
                failed_pt = Some(pt);
                continue;
            };
            let sink = Arc::clone(&shared);
            let (policy, cap) = match &shared.config.video {
                Some(v) => (v.codec_policy.clone(), v.max_decode),
                None => (super::video::CodecPolicy::default(), super::video::DecodeCap::default()),
            };
            let on_frame = move |frame| on_decoded_frame(&sink, ssrc, frame);
            match VideoDecoder::start_with(codec, pt, &policy, &super::video::GstRegistry, cap, on_frame) {
                Ok(d) => {
                    shared.lock().remote_video_codec = Some(d.codec());
                    decoder = Some((d, pt));
                    failed_pt = None;
                    // The new decoder counts its keyframe requests from zero.
                    seen_requests = 0;
                }
                Err(e) => {
                    log::error!("cannot start video decoder for {codec:?}: {e}");
                    failed_pt = Some(pt);
                    continue;
                }
            }
        }
        let Some((dec, _)) = decoder.as_ref() else {
            continue;
        };
        match packet.marshal() {
            Ok(raw) => {
                if let Err(e) = dec.push_rtp(raw.freeze()) {
                    log::debug!("{e}");
                }
            }
            Err(e) => log::debug!("cannot re-marshal a received video packet: {e}"),
        }
        // A packet lost for good breaks the pictures until the next keyframe: ask for one at once rather than
        // wait for the sender's periodic keyframe.
        let requests = dec.keyframe_requests();
        loss_pli_pending |= requests > seen_requests;
        seen_requests = requests;
        let now = Instant::now();
        if loss_pli_pending && last_pli.is_none_or(|t| now.duration_since(t) >= LOSS_PLI_SPACING) {
            loss_pli_pending = false;
            last_pli = Some(now);
            log::debug!("remote video lost a packet for good: PLI");
            if let Err(e) = send_pli(&shared, &track).await {
                log::debug!("{e}");
            }
        }
        // Until the stream's first frame decodes, ask for a keyframe now and then (Janus videoroom forwards
        // PLIs to the publisher; a SIP far end will send its own periodic keyframes).
        if !first_frame_seen && last_pli.is_none_or(|t| now.duration_since(t) >= REMOTE_PLI_PERIOD) {
            last_pli = Some(now);
            if let Err(e) = send_pli(&shared, &track).await {
                log::debug!("{e}");
            }
        }
    }
    log::debug!("remote video track ended");
}

fn on_decoded_frame(shared: &Shared, ssrc: u32, frame: VideoFrame) {
    let now = Instant::now();
    shared.video_frames_decoded.fetch_add(1, Ordering::Relaxed);
    let counter = read_frame_counter(&frame);
    let first = {
        let mut st = shared.lock();
        if let Some(stream) = st.remote_stream(ssrc, MediaKind::Video) {
            stream.frames_decoded += 1;
            stream.first_frame_at.get_or_insert(now);
            stream.last_frame = Some(frame.clone());
            if counter.is_some() {
                stream.last_frame_counter = counter;
            }
        }
        st.last_remote_frame = Some(frame);
        if let Some(c) = counter {
            if counter != st.last_remote_frame_counter {
                shared.video_frames_intact.fetch_add(1, Ordering::Relaxed);
                st.decoded_counters.write(DecodedCounter { counter: c, decoded_at: now });
            }
            st.last_remote_frame_counter = counter;
        }
        if st.first_remote_frame_at.is_none() {
            st.first_remote_frame_at = Some(Instant::now());
            true
        } else {
            false
        }
    };
    if first {
        shared.emit(MediaEvent::FirstRemoteVideoFrame);
    }
}
