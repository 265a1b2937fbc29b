//! The `callbox` command line: its subcommands and options as clap derive types ([`Cli`]), with the help
//! text of each option and the parsing of values (numbers, addresses, `WxH@FPS`, `WxH`), so that a bad
//! argument is a usage error that names it (exit 2). What the commands do is `main.rs`'s.
//!
//! The names and defaults are an interface: the systemd unit (which the QEMU image runs), the integration tests
//! and the benchmarks start `callbox` with them.

use callbox::calling::Secret;
use callbox::devices::video::sim::SimPicture;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

// The long texts keep their line breaks (verbatim): without clap's `wrap_help` (terminal size) nothing wraps them.
/// The calling appliance for intercoms and doorbells
///
/// `run` is the appliance (what the systemd service starts); `check-config` checks its
/// configuration without starting anything. `call` and `answer` place and answer calls by hand
/// as a real appliance would (Janus + SIP registration, media from the board's devices, or the
/// simulated ones with --sim); `devices` lists what the device manager sees.
#[derive(Debug, Parser)]
#[command(name = "callbox", version, verbatim_doc_comment)]
#[command(after_help = "Environment: RUST_LOG=info|debug|... (log filter, default info)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place a call and report what happened
    ///
    /// Registers, calls TARGET, talks for --talk seconds (after sending the digits of --dtmf-file
    /// and holding for --hold-for seconds, if asked) and hangs up; prints when it connected, the
    /// media statistics and why the call ended.
    #[command(verbatim_doc_comment)]
    Call(CallArgs),
    /// Wait for calls and answer them
    ///
    /// Registers, answers the next --calls incoming calls (each after --after seconds of ringing)
    /// and exits once the last one has ended; prints the media statistics of each call.
    #[command(verbatim_doc_comment)]
    Answer(AnswerArgs),
    /// The appliance (buttons, calls, ringing, door relay, LEDs, screen) until SIGTERM
    ///
    /// Everything comes from the configuration file and the board profile it names. With --sim,
    /// keys on stdin press buttons: c call, m mute, v video, h hang up (upper case: long press).
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Check a configuration file: the effective settings and every problem found
    ///
    /// Exits 1 when the configuration has problems.
    CheckConfig(CheckConfigArgs),
    /// List the cameras, microphones, speakers and video codecs found
    ///
    /// What the device manager sees (formats, permissions with reasons), the GStreamer encoders
    /// and decoders present, and with --watch hot-plug events for a while.
    #[command(verbatim_doc_comment)]
    Devices(DevicesArgs),
    /// Print the version (as --version)
    Version,
}

/// `callbox call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Whom to call: a user name, or a phone number (+15551234567; national with --country-code)
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Seconds to talk once connected, then hang up
    #[arg(long = "talk", value_name = "SECS", default_value_t = 5)]
    pub talk_secs: u64,
    /// Send the DTMF digits read from PATH ('-': stdin) once connected, 250 ms apart
    ///
    /// 0-9, *, # and A-D, at most 32; trailing whitespace is ignored. Never on the command line:
    /// arguments show in `ps` and the shell's history, and the digits may be a door code.
    #[arg(long, value_name = "PATH", value_parser = parse_dtmf_source)]
    pub dtmf_file: Option<DtmfSource>,
    /// Put the call on hold for SECS once connected, then resume it
    #[arg(long, value_name = "SECS")]
    pub hold_for: Option<u64>,
    /// Default country code for phone numbers without one
    #[arg(long, value_name = "CC")]
    pub country_code: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `callbox answer`.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// Calls to answer, then exit
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub calls: u32,
    /// Seconds to let each call ring before answering it
    #[arg(long = "after", value_name = "SECS", default_value_t = 0)]
    pub after_secs: u64,
    /// Show the far end's video on this framebuffer (/dev/fbN)
    #[arg(long, value_name = "DEVICE", conflicts_with = "screen")]
    pub fb: Option<PathBuf>,
    /// Or show it on an in-memory screen of that size (measurements, snapshots)
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub screen: Option<Size>,
    /// Save the screen (--fb or --screen) 2 s into each answered call, and whenever SIGUSR1 arrives
    #[arg(long, value_name = "FILE.png")]
    pub snapshot: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `callbox run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file, callbox.toml (the service runs with /etc/callbox/callbox.toml)
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Simulated board: devices, buttons (keys on stdin) and output lines
    #[arg(long)]
    pub sim: bool,
    /// Save the screen whenever SIGUSR1 arrives
    #[arg(long, value_name = "FILE.png")]
    pub snapshot: Option<PathBuf>,
    #[command(flatten)]
    pub board: BoardArgs,
}

/// `callbox check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file to check
    #[arg(value_name = "FILE", required_unless_present = "config", conflicts_with = "config")]
    pub file: Option<PathBuf>,
    /// The configuration file to check, as FILE (the spelling of `run`)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub board: BoardArgs,
}

impl CheckConfigArgs {
    /// The file to check, however it was given (clap requires one of the two).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref().or(self.config.as_deref())
    }
}

/// `callbox devices`.
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Then watch for SECS seconds, printing devices plugged in or out
    #[arg(long = "watch", value_name = "SECS")]
    pub watch_secs: Option<u64>,
    #[command(flatten)]
    pub devices: DeviceArgs,
}

/// Where board profiles are found (`run`, `check-config`).
#[derive(Debug, Args)]
pub struct BoardArgs {
    /// Where the board profiles are
    #[arg(long, value_name = "DIR", env = "CALLBOX_BOARD_DIR", default_value = callbox::config::DEFAULT_BOARD_DIR)]
    pub board_dir: PathBuf,
}

/// What `call` and `answer` share: the servers and credential, the media, the device manager.
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub devices: DeviceArgs,
}

/// Janus and the credential (`call`, `answer`): a token endpoint and a device key, or a static token.
#[derive(Debug, Args)]
#[command(next_help_heading = "Server options")]
#[command(group(ArgGroup::new("credential").required(true).args(["token_url", "token_file"])))]
pub struct ServerArgs {
    /// Janus WebSocket URL; repeat for fail-over [default: ws://127.0.0.1:8188]
    #[arg(long, value_name = "URL")]
    pub janus: Vec<String>,
    /// Token endpoint (http://host:port/v1/token), with --device-key-file
    #[arg(long, value_name = "URL", requires = "device_key_file")]
    pub token_url: Option<String>,
    /// The device key to present to --token-url
    #[arg(long, value_name = "PATH", requires = "token_url")]
    pub device_key_file: Option<PathBuf>,
    /// Or a static user access token (JWT) instead of --token-url
    #[arg(long, value_name = "PATH", conflicts_with_all = ["token_url", "device_key_file"])]
    pub token_file: Option<PathBuf>,
    /// Accept ws:// and http:// URLs to other hosts than this one (cleartext: a development stack only)
    #[arg(long)]
    pub allow_insecure_http: bool,
}

impl ServerArgs {
    /// Refuses cleartext (`ws://`, `http://`) to another host than this machine's loopback unless
    /// `--allow-insecure-http` is given: the token, the SIP credentials and the device key travel there.
    pub fn check_cleartext(&self) -> Result<(), String> {
        if self.allow_insecure_http {
            return Ok(());
        }
        let urls = self.janus.iter().chain(self.token_url.as_ref());
        for url in urls {
            if is_cleartext(url) && !is_loopback_host(url) {
                return Err(format!(
                    "'{url}' is unencrypted: use wss:// or https://, or give --allow-insecure-http for a \
                     development stack"
                ));
            }
        }
        Ok(())
    }
}

fn is_cleartext(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("ws://") || lower.starts_with("http://")
}

/// Whether `url`'s host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback_host(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The media of a call (`call`, `answer`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Media options")]
pub struct MediaArgs {
    /// Local address for media [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub bind_ip: Option<IpAddr>,
    /// Video size and rate asked of the camera, or 'off' [default: 640x480@30]
    #[arg(long, value_name = "WxH@FPS", value_parser = parse_video)]
    pub video: Option<Video>,
    /// Preferred video codec (both are offered) [default: h264]
    #[arg(long, value_name = "CODEC")]
    pub codec: Option<Codec>,
    /// Camera to use (default: the one kept in --config, else the first found)
    #[arg(long, value_name = "ID")]
    pub camera: Option<String>,
    /// Microphone to use (default: the one kept in --config, else the first found)
    #[arg(long, value_name = "ID")]
    pub microphone: Option<String>,
    /// Speaker to use (default: the one kept in --config, else the first found)
    #[arg(long, value_name = "ID")]
    pub speaker: Option<String>,
    /// No echo cancellation or noise suppression (headsets, measurements)
    #[arg(long)]
    pub no_audio_processing: bool,
    /// Force this GStreamer video encoder element
    #[arg(long, value_name = "ELEMENT")]
    pub encoder: Option<String>,
    /// Never the hardware video encoders and decoders
    #[arg(long)]
    pub software_codecs: bool,
}

/// The device manager (`call`, `answer`, `devices`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Device options")]
pub struct DeviceArgs {
    /// Simulated devices (tone microphone, capturing speaker, test-pattern camera)
    #[arg(long)]
    pub sim: bool,
    /// What the simulated camera shows: pattern (moving, frame counter) or bars (a still picture)
    #[arg(long, value_name = "PICTURE", default_value = "pattern", value_parser = parse_sim_picture)]
    pub sim_picture: SimPicture,
    /// callbox.toml whose [devices] table keeps the default devices
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pace ALSA devices by our clock (PCMs without a hardware clock: file, null)
    #[arg(long)]
    pub alsa_clock: bool,
    /// Where to look for V4L2 cameras [default: /dev]
    #[arg(long, value_name = "DIR")]
    pub dev_dir: Option<PathBuf>,
}

fn parse_sim_picture(s: &str) -> Result<SimPicture, String> {
    s.parse()
}

/// `--codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    H264,
    Vp8,
}

/// `--screen WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// `--video`: `off`, or the camera's size and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Video {
    Off,
    Mode { size: Size, fps: u32 },
}

/// `--dtmf-file`: where the digits to send are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtmfSource {
    /// `-`: standard input, read to its end.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl std::fmt::Display for DtmfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DtmfSource::Stdin => f.write_str("standard input"),
            DtmfSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Most digits `--dtmf-file` may hold: what a call queues for sending (`DtmfQueueError::Full` past it).
pub const MAX_DTMF_DIGITS: usize = 32;

/// Most bytes read from `--dtmf-file`: the digits and room for trailing whitespace; anything longer is refused
/// without being read further.
pub const MAX_DTMF_INPUT_BYTES: u64 = 1024;

/// Why the digits of `--dtmf-file` cannot be sent. Never quotes them (they may be a door code): a bad
/// character is named by its position only.
#[derive(Debug, thiserror::Error)]
pub enum DtmfInputError {
    #[error("--dtmf-file: cannot read {source_name}: {source}")]
    Read { source_name: DtmfSource, source: std::io::Error },
    #[error("--dtmf-file: {source_name} holds no digits")]
    Empty { source_name: DtmfSource },
    #[error("--dtmf-file: {source_name} holds more than {MAX_DTMF_DIGITS} digits")]
    TooLong { source_name: DtmfSource },
    #[error(
        "--dtmf-file: character {position} of {source_name} is not a DTMF digit (0-9, *, #, A-D; nothing else, \
         no spaces between digits)"
    )]
    NotADigit { source_name: DtmfSource, position: usize },
}

fn parse_dtmf_source(s: &str) -> Result<DtmfSource, String> {
    match s {
        "" => Err("give a file, or '-' for standard input".into()),
        "-" => Ok(DtmfSource::Stdin),
        path => Ok(DtmfSource::File(PathBuf::from(path))),
    }
}

/// The DTMF digits in `text` (read from `source_name`): trailing whitespace (a final newline) is dropped,
/// the rest must be 0-9, `*`, `#` or A-D (lower-case a-d taken as upper-case), at most [`MAX_DTMF_DIGITS`].
pub fn parse_dtmf_digits(text: &str, source_name: &DtmfSource) -> Result<Secret, DtmfInputError> {
    let digits = text.trim_end();
    if digits.is_empty() {
        return Err(DtmfInputError::Empty { source_name: source_name.clone() });
    }
    let mut checked = String::with_capacity(digits.len());
    for (i, c) in digits.chars().enumerate() {
        if !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d') {
            return Err(DtmfInputError::NotADigit { source_name: source_name.clone(), position: i + 1 });
        }
        if i >= MAX_DTMF_DIGITS {
            return Err(DtmfInputError::TooLong { source_name: source_name.clone() });
        }
        checked.push(c.to_ascii_uppercase());
    }
    Ok(Secret::new(checked))
}

fn parse_size(s: &str) -> Result<Size, String> {
    let bad = || format!("'{s}' is not WxH");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    Ok(Size { width: w.parse().map_err(|_| bad())?, height: h.parse().map_err(|_| bad())? })
}

fn parse_video(s: &str) -> Result<Video, String> {
    if s == "off" {
        return Ok(Video::Off);
    }
    let bad = || format!("'{s}' is not WxH@FPS or 'off'");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    Ok(Video::Mode { size: parse_size(size).map_err(|_| bad())?, fps: fps.parse().map_err(|_| bad())? })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cleartext_only_to_this_machine_unless_allowed() {
        let args = |janus: &str, token: Option<&str>, allow: bool| ServerArgs {
            janus: vec![janus.to_owned()],
            token_url: token.map(str::to_owned),
            device_key_file: None,
            token_file: None,
            allow_insecure_http: allow,
        };
        assert!(args("ws://127.0.0.1:8188", Some("http://localhost:8090/v1/token"), false).check_cleartext().is_ok());
        assert!(args("ws://[::1]:8188", None, false).check_cleartext().is_ok());
        assert!(args("wss://janus.example.org", Some("https://tokens.example.org/v1/token"), false)
            .check_cleartext()
            .is_ok());
        let err = args("ws://janus.example.org:8188", None, false).check_cleartext().unwrap_err();
        assert!(err.contains("ws://janus.example.org:8188") && err.contains("--allow-insecure-http"), "{err}");
        assert!(args("wss://janus.example.org", Some("http://10.0.0.2/v1/token"), false).check_cleartext().is_err());
        assert!(args("ws://127.0.0.1.evil.example:80", None, false).check_cleartext().is_err());
        assert!(args("ws://janus.example.org:8188", None, true).check_cleartext().is_ok());
    }

    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("callbox").chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> Command {
        parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command
    }

    fn error(args: &[&str]) -> clap::Error {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn call_as_in_the_readme() {
        let Command::Call(a) = command(&[
            "call",
            "monitor",
            "--janus",
            "ws://127.0.0.1:8188",
            "--token-file",
            "token.jwt",
            "--talk",
            "10",
        ]) else {
            panic!("not call")
        };
        assert_eq!(a.target, "monitor");
        assert_eq!(a.talk_secs, 10);
        assert_eq!(a.client.server.janus, ["ws://127.0.0.1:8188"]);
        assert_eq!(a.client.server.token_file.as_deref(), Some(Path::new("token.jwt")));
        assert_eq!((a.dtmf_file, a.hold_for, a.country_code), (None, None, None));

        let Command::Call(a) = command(&[
            "call",
            "--token-url",
            "http://h:8090/v1/token",
            "--device-key-file",
            "key",
            "5551234567",
            "--country-code",
            "1",
            "--dtmf-file",
            "-",
            "--hold-for",
            "3",
            "--codec",
            "vp8",
            "--video",
            "320x240@15",
            "--bind-ip",
            "10.0.0.2",
            "--sim",
        ]) else {
            panic!("not call")
        };
        assert_eq!(a.target, "5551234567");
        assert_eq!(a.talk_secs, 5, "the default");
        assert_eq!((a.country_code.as_deref(), a.dtmf_file, a.hold_for), (Some("1"), Some(DtmfSource::Stdin), Some(3)));
        assert!(a.client.server.janus.is_empty(), "the client's default");
        assert_eq!(a.client.server.token_url.as_deref(), Some("http://h:8090/v1/token"));
        assert_eq!(a.client.media.codec, Some(Codec::Vp8));
        assert_eq!(a.client.media.video, Some(Video::Mode { size: Size { width: 320, height: 240 }, fps: 15 }));
        assert_eq!(a.client.media.bind_ip, Some(IpAddr::from([10, 0, 0, 2])));
        assert!(a.client.devices.sim);
    }

    #[test]
    fn dtmf_digits_come_from_a_file_or_stdin_never_from_argv() {
        let Command::Call(a) = command(&["call", "door", "--token-file", "t", "--dtmf-file", "/run/user/1/code"])
        else {
            panic!("not call")
        };
        assert_eq!(a.dtmf_file, Some(DtmfSource::File(PathBuf::from("/run/user/1/code"))));
        assert_eq!(a.dtmf_file.map(|s| s.to_string()).as_deref(), Some("/run/user/1/code"));
        assert_eq!(DtmfSource::Stdin.to_string(), "standard input");
        // The digits themselves are no argument any more.
        let e = error(&["call", "door", "--token-file", "t", "--dtmf", "2468"]);
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(!e.to_string().contains("2468"), "{e}");
        assert_eq!(error(&["call", "door", "--token-file", "t", "--dtmf-file", ""]).kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn dtmf_digits_are_checked_and_never_quoted() {
        let from = DtmfSource::File(PathBuf::from("code.txt"));
        let ok = |text: &str| parse_dtmf_digits(text, &from).map(|s| s.expose().to_owned());
        assert_eq!(ok("2468#\n").unwrap(), "2468#", "the trailing newline is dropped");
        assert_eq!(ok("12*#abcdABCD \r\n\t").unwrap(), "12*#ABCDABCD", "a-d are A-D; trailing whitespace dropped");
        assert_eq!(ok(&"9".repeat(MAX_DTMF_DIGITS)).unwrap().len(), MAX_DTMF_DIGITS, "the bound itself fits");
        for (text, position) in [("97531 2", Some(6)), ("9753x", Some(5)), (" 97531", Some(1)), ("9753é", Some(5))] {
            let e = parse_dtmf_digits(text, &from).unwrap_err();
            assert!(matches!(e, DtmfInputError::NotADigit { position: p, .. } if Some(p) == position), "{e:?}");
            let (shown, debug) = (e.to_string(), format!("{e:?}"));
            assert!(!shown.contains("9753") && !debug.contains("9753"), "{shown} / {debug}");
            assert!(shown.contains("code.txt") && shown.contains("--dtmf-file"), "{shown}");
        }
        let e = parse_dtmf_digits(&"97531".repeat(7), &from).unwrap_err();
        assert!(matches!(e, DtmfInputError::TooLong { .. }), "{e:?}");
        assert!(!e.to_string().contains("97531") && !format!("{e:?}").contains("97531"), "{e}");
        for empty in ["", "\n", "  \n"] {
            assert!(matches!(parse_dtmf_digits(empty, &from), Err(DtmfInputError::Empty { .. })), "{empty:?}");
        }
    }

    #[test]
    fn answer_as_the_benchmarks_start_it() {
        let Command::Answer(a) = command(&[
            "answer",
            "--janus",
            "ws://127.0.0.1:1",
            "--janus",
            "ws://127.0.0.1:2",
            "--token-url",
            "http://127.0.0.1:8090/v1/token",
            "--device-key-file",
            "/tmp/device-key",
            "--sim",
            "--sim-picture",
            "bars",
            "--calls",
            "3",
            "--video",
            "640x480@30",
            "--codec",
            "h264",
            "--no-audio-processing",
            "--screen",
            "800x480",
            "--snapshot",
            "s.png",
        ]) else {
            panic!("not answer")
        };
        assert_eq!(a.client.server.janus, ["ws://127.0.0.1:1", "ws://127.0.0.1:2"], "repeatable, in order");
        assert_eq!(a.client.server.device_key_file.as_deref(), Some(Path::new("/tmp/device-key")));
        assert_eq!((a.calls, a.after_secs), (3, 0));
        assert_eq!(a.screen, Some(Size { width: 800, height: 480 }));
        assert_eq!(a.snapshot.as_deref(), Some(Path::new("s.png")));
        assert!(a.client.media.no_audio_processing && a.client.devices.sim);
        assert_eq!(a.client.devices.sim_picture, SimPicture::Bars);

        let Command::Answer(a) = command(&[
            "answer",
            "--token-file",
            "t.jwt",
            "--after",
            "2",
            "--fb",
            "/dev/fb0",
            "--video",
            "off",
            "--camera",
            "c",
            "--microphone",
            "m",
            "--speaker",
            "s",
            "--encoder",
            "x264enc",
            "--software-codecs",
            "--config",
            "callbox.toml",
            "--alsa-clock",
            "--dev-dir",
            "/tmp/dev",
        ]) else {
            panic!("not answer")
        };
        assert_eq!((a.calls, a.after_secs), (1, 2));
        assert_eq!(a.fb.as_deref(), Some(Path::new("/dev/fb0")));
        let m = &a.client.media;
        assert_eq!(m.video, Some(Video::Off));
        assert_eq!(
            (m.camera.as_deref(), m.microphone.as_deref(), m.speaker.as_deref()),
            (Some("c"), Some("m"), Some("s"))
        );
        assert_eq!(m.encoder.as_deref(), Some("x264enc"));
        assert!(m.software_codecs);
        let d = &a.client.devices;
        assert_eq!(d.config.as_deref(), Some(Path::new("callbox.toml")));
        assert_eq!(d.dev_dir.as_deref(), Some(Path::new("/tmp/dev")));
        assert!(d.alsa_clock && !d.sim);
        assert_eq!(d.sim_picture, SimPicture::Pattern, "the moving pattern by default");
    }

    #[test]
    fn run_as_the_service_and_the_test_start_it() {
        let Command::Run(a) = command(&["run", "--config", "/etc/callbox/callbox.toml"]) else { panic!("not run") };
        assert_eq!(a.config, Path::new("/etc/callbox/callbox.toml"));
        assert!(!a.sim && a.snapshot.is_none());
        if std::env::var_os("CALLBOX_BOARD_DIR").is_none() {
            assert_eq!(a.board.board_dir, Path::new(callbox::config::DEFAULT_BOARD_DIR));
        }

        let Command::Run(a) =
            command(&["run", "--config", "c.toml", "--board-dir", "board", "--sim", "--snapshot", "s.png"])
        else {
            panic!("not run")
        };
        assert_eq!(a.board.board_dir, Path::new("board"));
        assert_eq!(a.snapshot.as_deref(), Some(Path::new("s.png")));
        assert!(a.sim);

        assert_eq!(error(&["run"]).kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn check_config_takes_the_file_or_config() {
        let Command::CheckConfig(a) = command(&["check-config", "c.toml", "--board-dir", "board"]) else {
            panic!("not check-config")
        };
        assert_eq!(a.path(), Some(Path::new("c.toml")));
        assert_eq!(a.board.board_dir, Path::new("board"));
        let Command::CheckConfig(a) = command(&["check-config", "--config", "/etc/callbox/callbox.toml"]) else {
            panic!("not check-config")
        };
        assert_eq!(a.path(), Some(Path::new("/etc/callbox/callbox.toml")));
        assert_eq!(error(&["check-config"]).kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(error(&["check-config", "a.toml", "--config", "b.toml"]).kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn devices_and_version() {
        let Command::Devices(a) = command(&["devices", "--sim", "--watch", "30", "--alsa-clock", "--dev-dir", "/dev"])
        else {
            panic!("not devices")
        };
        assert_eq!(a.watch_secs, Some(30));
        assert!(a.devices.sim && a.devices.alsa_clock);
        let Command::Devices(a) = command(&["devices", "--config", "callbox.toml"]) else { panic!("not devices") };
        assert_eq!((a.watch_secs, a.devices.config.as_deref()), (None, Some(Path::new("callbox.toml"))));
        assert!(matches!(command(&["version"]), Command::Version));
    }

    #[test]
    fn help_and_version_flags() {
        assert_eq!(error(&["--help"]).kind(), ErrorKind::DisplayHelp);
        assert_eq!(error(&["-h"]).kind(), ErrorKind::DisplayHelp);
        assert_eq!(error(&["call", "--help"]).kind(), ErrorKind::DisplayHelp);
        assert_eq!(error(&["help", "answer"]).kind(), ErrorKind::DisplayHelp);
        let version = error(&["--version"]);
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        assert_eq!(version.to_string(), format!("callbox {}\n", env!("CARGO_PKG_VERSION")));
        let help = error(&["--help"]).to_string();
        for name in ["call", "answer", "run", "check-config", "devices", "version", "RUST_LOG"] {
            assert!(help.contains(name), "{name} not in the help:\n{help}");
        }
        assert_eq!(error(&[]).kind(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }

    #[test]
    fn a_bad_value_is_named() {
        for (args, name) in [
            (&["call", "x", "--token-file", "t", "--talk", "ten"][..], "--talk"),
            (&["call", "x", "--token-file", "t", "--hold-for=-1"], "--hold-for"),
            (&["answer", "--token-file", "t", "--calls", "many"], "--calls"),
            (&["answer", "--token-file", "t", "--after", "1.5"], "--after"),
            (&["answer", "--token-file", "t", "--screen", "800"], "--screen"),
            (&["answer", "--token-file", "t", "--video", "640x480"], "--video"),
            (&["answer", "--token-file", "t", "--bind-ip", "localhost"], "--bind-ip"),
            (&["answer", "--token-file", "t", "--codec", "av1"], "--codec"),
            (&["devices", "--watch", "soon"], "--watch"),
        ] {
            let e = error(args);
            assert!(
                matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue),
                "{args:?}: {:?}",
                e.kind()
            );
            assert!(e.to_string().contains(name), "{args:?}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn wrong_arguments_are_usage_errors() {
        assert_eq!(error(&["dial"]).kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(error(&["call", "--token-file", "t"]).kind(), ErrorKind::MissingRequiredArgument, "no TARGET");
        assert_eq!(error(&["answer"]).kind(), ErrorKind::MissingRequiredArgument, "no credential");
        assert_eq!(error(&["answer", "--token-url", "u"]).kind(), ErrorKind::MissingRequiredArgument);
        let both = error(&["answer", "--token-file", "t", "--token-url", "u", "--device-key-file", "k"]);
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        let both = error(&["answer", "--token-file", "t", "--fb", "/dev/fb0", "--screen", "8x8"]);
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(error(&["devices", "--janus", "ws://x"]).kind(), ErrorKind::UnknownArgument);
        assert_eq!(error(&["answer", "--token-file", "t", "--cals", "2"]).kind(), ErrorKind::UnknownArgument);
    }
}
