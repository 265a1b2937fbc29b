//! Which GStreamer codec elements exist and which are used: the candidates per codec in order of
//! preference (hardware `v4l2*` elements first), the registry they are looked up in ([`ElementRegistry`]:
//! [`GstRegistry`] or a test double), [`CodecPolicy`] (a forced element, hardware allowed or not), and
//! starting the first candidate that starts.

use super::init_gstreamer;
use crate::media::{MediaError, VideoCodec};
use gstreamer as gst;

/// Which GStreamer elements exist: the real registry ([`GstRegistry`]) or a test double.
pub trait ElementRegistry {
    /// Whether an element factory of this name is installed.
    fn has(&self, name: &str) -> bool;
}

/// The GStreamer registry of this process (V4L2 codec elements are registered only where their
/// device exists, so probing it finds the board's hardware codecs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GstRegistry;

impl ElementRegistry for GstRegistry {
    fn has(&self, name: &str) -> bool {
        init_gstreamer().is_ok() && gst::ElementFactory::find(name).is_some()
    }
}

/// H.264 encoders in order of preference: the V4L2 memory-to-memory encoder (Pi 4 hardware), then x264
/// (`tune=zerolatency speed-preset=ultrafast`: the encoder this firmware has been interop-tested with,
/// and the one whose rate control holds the target best at low bitrates), then OpenH264 (lighter on
/// CPU in `bench_codecs`, the fallback where x264 is not installed).
pub const H264_ENCODERS: &[&str] = &["v4l2h264enc", "x264enc", "openh264enc"];
/// VP8 encoders in order of preference (`v4l2vp8enc` exists on boards with a VP8 encoder, not a Pi 4).
pub const VP8_ENCODERS: &[&str] = &["v4l2vp8enc", "vp8enc"];
/// H.264 decoders in order of preference: the hardware decoder (registered only where the V4L2 device
/// exists), then libav, then OpenH264 (which decodes x264's stream since the payloader stopped inserting SPS/PPS
/// between the slices of its keyframes; libav maps libavfilter and its dependencies, about 29 MB of
/// shared-library pages, but OpenH264 has not yet been tried on every foreign sender: docs/benchmarks.md).
pub const H264_DECODERS: &[&str] = &["v4l2h264dec", "avdec_h264", "openh264dec"];
/// VP8 decoders in order of preference.
pub const VP8_DECODERS: &[&str] = &["v4l2vp8dec", "vp8dec"];

/// The encoder candidates for `codec`, best first.
pub fn encoder_candidates(codec: VideoCodec) -> &'static [&'static str] {
    match codec {
        VideoCodec::H264 => H264_ENCODERS,
        VideoCodec::Vp8 => VP8_ENCODERS,
    }
}

/// The decoder candidates for `codec`, best first.
pub fn decoder_candidates(codec: VideoCodec) -> &'static [&'static str] {
    match codec {
        VideoCodec::H264 => H264_DECODERS,
        VideoCodec::Vp8 => VP8_DECODERS,
    }
}

/// Whether `element` is a hardware (V4L2 memory-to-memory) codec element.
pub fn is_hardware(element: &str) -> bool {
    element.starts_with("v4l2")
}

/// The encoders for `codec` that `registry` has, best first (for `callbox devices`).
pub fn available_encoders(registry: &dyn ElementRegistry, codec: VideoCodec) -> Vec<&'static str> {
    encoder_candidates(codec).iter().copied().filter(|e| registry.has(e)).collect()
}

/// The decoders for `codec` that `registry` has, best first (for `callbox devices`).
pub fn available_decoders(registry: &dyn ElementRegistry, codec: VideoCodec) -> Vec<&'static str> {
    decoder_candidates(codec).iter().copied().filter(|e| registry.has(e)).collect()
}

/// How codec elements are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecPolicy {
    /// Use this encoder element and no other (it must exist). An element this module knows as an
    /// encoder of the *other* codec is ignored for this one, so forcing `openh264enc` still lets a VP8
    /// call pick its own encoder.
    pub forced_encoder: Option<String>,
    /// Use this decoder element and no other (same rules as `forced_encoder`).
    pub forced_decoder: Option<String>,
    /// Whether hardware (`v4l2*`) elements may be used; `false` forces the software fallback.
    pub allow_hardware: bool,
}

impl Default for CodecPolicy {
    fn default() -> Self {
        Self { forced_encoder: None, forced_decoder: None, allow_hardware: true }
    }
}

fn select(
    registry: &dyn ElementRegistry,
    kind: &str,
    codec: VideoCodec,
    candidates: &'static [&'static str],
    others: &'static [&'static str],
    forced: Option<&str>,
    allow_hardware: bool,
) -> Result<Vec<String>, MediaError> {
    if let Some(name) = forced.filter(|f| !others.contains(f)) {
        if is_hardware(name) && !allow_hardware {
            return Err(MediaError::Config(format!(
                "{kind} {name} is forced but hardware codecs are disallowed for {codec:?}"
            )));
        }
        return if registry.has(name) {
            Ok(vec![name.to_owned()])
        } else {
            Err(MediaError::MissingElement(name.into()))
        };
    }
    let considered: Vec<&str> = candidates.iter().copied().filter(|e| allow_hardware || !is_hardware(e)).collect();
    let present: Vec<String> = considered.iter().filter(|e| registry.has(e)).map(|e| (*e).to_owned()).collect();
    if present.is_empty() {
        return Err(MediaError::MissingElement(considered.join("|")));
    }
    Ok(present)
}

/// The encoders to try for `codec` under `policy`, best first: every candidate present (hardware only
/// if allowed), or just the forced one. Errors: the forced element is missing
/// ([`MediaError::MissingElement`] naming it), or none is present (`MissingElement` naming all the
/// candidates considered, `|`-separated).
pub fn select_encoders(
    registry: &dyn ElementRegistry,
    codec: VideoCodec,
    policy: &CodecPolicy,
) -> Result<Vec<String>, MediaError> {
    let others = match codec {
        VideoCodec::H264 => VP8_ENCODERS,
        VideoCodec::Vp8 => H264_ENCODERS,
    };
    let forced = policy.forced_encoder.as_deref();
    select(registry, "encoder", codec, encoder_candidates(codec), others, forced, policy.allow_hardware)
}

/// The decoders to try for `codec` under `policy`, best first (see [`select_encoders`]).
pub fn select_decoders(
    registry: &dyn ElementRegistry,
    codec: VideoCodec,
    policy: &CodecPolicy,
) -> Result<Vec<String>, MediaError> {
    let others = match codec {
        VideoCodec::H264 => VP8_DECODERS,
        VideoCodec::Vp8 => H264_DECODERS,
    };
    let forced = policy.forced_decoder.as_deref();
    select(registry, "decoder", codec, decoder_candidates(codec), others, forced, policy.allow_hardware)
}

/// Picks the encoder element for `codec` from this process's registry: `forced` if given (must exist),
/// else the first available, hardware included.
pub fn choose_encoder(codec: VideoCodec, forced: Option<&str>) -> Result<String, MediaError> {
    let policy = CodecPolicy { forced_encoder: forced.map(str::to_owned), ..CodecPolicy::default() };
    let mut all = select_encoders(&GstRegistry, codec, &policy)?;
    Ok(all.remove(0))
}

/// Starts the first candidate that starts: a failing one is logged and the next tried. Returns what
/// was started, its element and the candidates not yet tried (for a failure right after start).
pub(super) fn start_first<T>(
    what: &str,
    candidates: &[String],
    mut start: impl FnMut(&str) -> Result<T, MediaError>,
) -> Result<(T, String, Vec<String>), MediaError> {
    let mut failures: Vec<String> = Vec::new();
    for (i, element) in candidates.iter().enumerate() {
        match start(element) {
            Ok(started) => return Ok((started, element.clone(), candidates[i + 1..].to_vec())),
            Err(e) if candidates.len() == 1 => return Err(e),
            Err(e) => {
                match candidates.get(i + 1) {
                    Some(next) => log::warn!("{what}: {element} did not start ({e}); trying {next}"),
                    None => log::warn!("{what}: {element} did not start ({e})"),
                }
                failures.push(format!("{element}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        return Err(MediaError::MissingElement(format!("{what}: no candidate")));
    }
    Err(MediaError::Gstreamer(format!("{what}: no candidate started ({})", failures.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A registry that has exactly the named elements.
    struct FakeRegistry(HashSet<&'static str>);

    impl FakeRegistry {
        fn with(names: &[&'static str]) -> Self {
            Self(names.iter().copied().collect())
        }
    }

    impl ElementRegistry for FakeRegistry {
        fn has(&self, name: &str) -> bool {
            self.0.contains(name)
        }
    }

    fn software_only() -> CodecPolicy {
        CodecPolicy { allow_hardware: false, ..CodecPolicy::default() }
    }

    // --- selection against a fake registry -------------------------------------------------------

    #[test]
    fn hardware_present_is_chosen_first() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "x264enc", "openh264enc", "v4l2h264dec", "avdec_h264"]);
        let p = CodecPolicy::default();
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &p).unwrap(), ["v4l2h264enc", "x264enc", "openh264enc"]);
        assert_eq!(select_decoders(&reg, VideoCodec::H264, &p).unwrap(), ["v4l2h264dec", "avdec_h264"]);
        let vp8 = FakeRegistry::with(&["v4l2vp8enc", "vp8enc", "v4l2vp8dec", "vp8dec"]);
        assert_eq!(select_encoders(&vp8, VideoCodec::Vp8, &p).unwrap()[0], "v4l2vp8enc");
        assert_eq!(select_decoders(&vp8, VideoCodec::Vp8, &p).unwrap()[0], "v4l2vp8dec");
    }

    #[test]
    fn hardware_disallowed_falls_back_to_software() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "openh264enc", "v4l2h264dec", "avdec_h264"]);
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &software_only()).unwrap(), ["openh264enc"]);
        assert_eq!(select_decoders(&reg, VideoCodec::H264, &software_only()).unwrap(), ["avdec_h264"]);
        // Forcing a hardware element while hardware is disallowed is a configuration error.
        let p = CodecPolicy { forced_encoder: Some("v4l2h264enc".into()), ..software_only() };
        assert!(matches!(select_encoders(&reg, VideoCodec::H264, &p), Err(MediaError::Config(_))));
    }

    #[test]
    fn forced_encoder_is_the_only_candidate_and_must_exist() {
        let reg = FakeRegistry::with(&["v4l2h264enc", "x264enc", "openh264enc", "vp8enc"]);
        let p = CodecPolicy { forced_encoder: Some("openh264enc".into()), ..CodecPolicy::default() };
        assert_eq!(select_encoders(&reg, VideoCodec::H264, &p).unwrap(), ["openh264enc"]);
        // An H.264 encoder forced does not constrain VP8.
        assert_eq!(select_encoders(&reg, VideoCodec::Vp8, &p).unwrap(), ["vp8enc"]);
        let p = CodecPolicy { forced_encoder: Some("nvh264enc".into()), ..CodecPolicy::default() };
        match select_encoders(&reg, VideoCodec::H264, &p) {
            Err(MediaError::MissingElement(name)) => assert_eq!(name, "nvh264enc"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        let p = CodecPolicy { forced_decoder: Some("openh264dec".into()), ..CodecPolicy::default() };
        assert!(
            matches!(select_decoders(&reg, VideoCodec::H264, &p), Err(MediaError::MissingElement(n)) if n == "openh264dec")
        );
    }

    #[test]
    fn nothing_present_names_the_candidates() {
        let reg = FakeRegistry::with(&[]);
        match select_encoders(&reg, VideoCodec::H264, &CodecPolicy::default()) {
            Err(MediaError::MissingElement(names)) => assert_eq!(names, "v4l2h264enc|x264enc|openh264enc"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        match select_decoders(&reg, VideoCodec::Vp8, &software_only()) {
            Err(MediaError::MissingElement(names)) => assert_eq!(names, "vp8dec"),
            other => panic!("expected MissingElement, got {other:?}"),
        }
        let e = select_encoders(&reg, VideoCodec::Vp8, &CodecPolicy::default()).unwrap_err();
        assert!(e.to_string().contains("v4l2vp8enc|vp8enc"), "{e}");
    }

    #[test]
    fn available_lists_follow_the_registry() {
        let reg = FakeRegistry::with(&["openh264enc", "vp8enc", "avdec_h264", "openh264dec"]);
        assert_eq!(available_encoders(&reg, VideoCodec::H264), ["openh264enc"]);
        assert_eq!(available_encoders(&reg, VideoCodec::Vp8), ["vp8enc"]);
        assert_eq!(available_decoders(&reg, VideoCodec::H264), ["avdec_h264", "openh264dec"]);
        assert!(available_decoders(&reg, VideoCodec::Vp8).is_empty());
    }

    #[test]
    fn start_first_skips_a_failing_element() {
        let candidates: Vec<String> = ["v4l2h264enc", "x264enc", "openh264enc"].map(String::from).to_vec();
        let mut tried = Vec::new();
        let (got, element, rest) = start_first("test", &candidates, |e| {
            tried.push(e.to_owned());
            if is_hardware(e) {
                Err(MediaError::Gstreamer("cannot open /dev/video11".into()))
            } else {
                Ok(e.len())
            }
        })
        .unwrap();
        assert_eq!((got, element.as_str(), rest), (7, "x264enc", vec!["openh264enc".to_owned()]));
        assert_eq!(tried, ["v4l2h264enc", "x264enc"]);
        // All failing: the error names each.
        let e =
            start_first::<()>("test", &candidates, |e| Err(MediaError::Gstreamer(format!("{e} broke")))).unwrap_err();
        let text = e.to_string();
        assert!(candidates.iter().all(|c| text.contains(&format!("{c}: GStreamer: {c} broke"))), "{text}");
        // A single candidate's own error comes back unchanged.
        let one = vec!["x264enc".to_owned()];
        assert!(matches!(
            start_first::<()>("test", &one, |e| Err(MediaError::MissingElement(e.into()))),
            Err(MediaError::MissingElement(n)) if n == "x264enc"
        ));
    }

    // --- selection against the real registry ------------------------------------------------------

    fn inspect_has(name: &str) -> bool {
        crate::test_support::target_command("gst-inspect-1.0")
            .arg(name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    #[test]
    fn real_registry_choice_matches_gst_inspect() {
        init_gstreamer().unwrap();
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let enc: Vec<&str> = encoder_candidates(codec).iter().copied().filter(|e| inspect_has(e)).collect();
            let dec: Vec<&str> = decoder_candidates(codec).iter().copied().filter(|e| inspect_has(e)).collect();
            assert_eq!(available_encoders(&GstRegistry, codec), enc, "{codec:?}");
            assert_eq!(available_decoders(&GstRegistry, codec), dec, "{codec:?}");
            assert_eq!(choose_encoder(codec, None).unwrap(), enc[0]);
            let policy = CodecPolicy::default();
            assert_eq!(select_decoders(&GstRegistry, codec, &policy).unwrap()[0], dec[0]);
            let soft = select_encoders(&GstRegistry, codec, &software_only()).unwrap();
            assert_eq!(soft[0], *enc.iter().find(|e| !is_hardware(e)).unwrap());
        }
        // What a machine without V4L2 codec devices (CI) has.
        if !available_encoders(&GstRegistry, VideoCodec::H264).iter().any(|e| is_hardware(e)) {
            assert_eq!(choose_encoder(VideoCodec::H264, None).unwrap(), "x264enc");
            assert_eq!(choose_encoder(VideoCodec::Vp8, None).unwrap(), "vp8enc");
        }
        if !available_decoders(&GstRegistry, VideoCodec::H264).iter().any(|e| is_hardware(e)) {
            let policy = CodecPolicy::default();
            assert_eq!(select_decoders(&GstRegistry, VideoCodec::H264, &policy).unwrap()[0], "avdec_h264");
            assert_eq!(select_decoders(&GstRegistry, VideoCodec::Vp8, &policy).unwrap()[0], "vp8dec");
        }
    }

    #[test]
    fn forcing_a_missing_encoder_is_an_error() {
        init_gstreamer().unwrap();
        assert!(matches!(
            choose_encoder(VideoCodec::H264, Some("no-such-encoder")),
            Err(MediaError::MissingElement(_))
        ));
    }
}
