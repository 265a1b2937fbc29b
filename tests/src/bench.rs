//! What the benchmark programs share: the measured appliance, `callbox answer` started as a process of its own and
//! provisioned at a stack (it answers the next calls, 1:1 or group, and exits); what they read of a process in
//! /proc (CPU time, peak resident set size); its own media report; the `--video WxH@FPS` argument.

use std::path::{Path, PathBuf};

use crate::{HarnessError, Stack};

/// An in-process appliance for a benchmark, provisioned at `stack`: the default client configuration with the
/// test-pattern camera at `video` (width, height, fps), VP8 preferred with `vp8`.
pub async fn appliance(
    stack: &Stack,
    name: &str,
    video: (u32, u32, u32),
    vp8: bool,
) -> Result<callbox::client::CallClient, callbox::client::ClientError> {
    appliance_showing(stack, name, video, vp8, callbox::devices::video::sim::SimPicture::Pattern).await
}

/// [`appliance`] whose simulated camera shows `picture`.
pub async fn appliance_showing(
    stack: &Stack,
    name: &str,
    video: (u32, u32, u32),
    vp8: bool,
    picture: callbox::devices::video::sim::SimPicture,
) -> Result<callbox::client::CallClient, callbox::client::ClientError> {
    let mut config = callbox::client::ClientConfig { janus_urls: vec![stack.janus_ws_url()], ..Default::default() };
    config.media.devices =
        callbox::devices::DeviceManager::simulated_showing(callbox::devices::DevicePreferences::in_memory(), picture);
    if let Some(v) = config.media.video.as_mut() {
        (v.width, v.height, v.fps) = video;
        if vp8 {
            v.codecs = callbox::media::VideoCodec::Vp8.preferred_first();
        }
    }
    crate::appliance::appliance(stack, name, config).await
}

/// `WxH@FPS` (even sizes of at least 16, 1 to 60 frames per second).
pub fn parse_video(v: &str) -> Option<(u32, u32, u32)> {
    let (size, fps) = v.split_once('@')?;
    let (w, h) = size.split_once('x')?;
    let (w, h, fps) = (w.parse().ok()?, h.parse().ok()?, fps.parse().ok()?);
    (w >= 16 && h >= 16 && w % 2 == 0 && h % 2 == 0 && (1..=60).contains(&fps)).then_some((w, h, fps))
}

/// A `callbox answer` process and its logs.
pub struct AnswerProcess {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// Starts `program answer` as user `name` with simulated devices, answering `calls` calls, with `extra` arguments
/// (`--video WxH@FPS`, `--codec vp8`, ...); its logs go to files in a folder of the stack.
pub fn start_answer_process(
    stack: &Stack,
    program: &Path,
    name: &str,
    calls: u32,
    extra: &[String],
) -> Result<AnswerProcess, HarnessError> {
    let dir = stack.dir().join(format!("answer-{name}"));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| HarnessError::Io { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let key_file = dir.join("device-key");
    let key = crate::appliance::provision_device(stack, name);
    // 0600: `callbox` refuses a key file that others could read, as the appliance does.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_file)
            .map_err(io("cannot write", &key_file))?;
        file.write_all(key.expose().as_bytes()).map_err(io("cannot write", &key_file))?;
    }
    let (stdout, stderr) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let out = std::fs::File::create(&stdout).map_err(io("cannot create", &stdout))?;
    let err = std::fs::File::create(&stderr).map_err(io("cannot create", &stderr))?;
    let child = tokio::process::Command::new(program)
        .args(["answer", "--janus", &stack.janus_ws_url(), "--token-url", &stack.token_url()])
        .arg("--device-key-file")
        .arg(&key_file)
        .args(["--sim", "--calls", &calls.to_string()])
        .args(extra)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,callbox=info".into()))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(io("cannot start", program))?;
    let pid = child.id().ok_or_else(|| HarnessError::Exited {
        name: format!("callbox answer ({name})"),
        status: "exited at once".into(),
        log: stderr.clone(),
    })?;
    Ok(AnswerProcess { child, pid, stdout, stderr })
}

/// The callee's own report of its media: the `media: ...` line `callbox answer` prints, or the engine's
/// `media closed: audio A sent / B received, video C sent / D decoded` log line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChildMedia {
    pub frames_decoded: Option<u64>,
    pub audio_packets_received: Option<u64>,
    pub level_dbfs: Option<f32>,
    pub line: Option<String>,
}

/// The number just before `word` (`"... 1795 decoded"` -> 1795).
fn number_before(line: &str, word: &str) -> Option<u64> {
    let (before, _) = line.split_once(word)?;
    before.trim_end().rsplit_once(' ').map(|(_, v)| v).unwrap_or(before.trim()).parse().ok()
}

pub fn parse_child_media(output: &str) -> ChildMedia {
    let Some(line) = output.lines().rev().find(|l| l.starts_with("media:") || l.contains("media closed:")) else {
        return ChildMedia::default();
    };
    let level = line
        .split_once("far-end level ")
        .and_then(|(_, r)| r.split_once(" dBFS"))
        .and_then(|(v, _)| v.trim().parse().ok());
    ChildMedia {
        frames_decoded: number_before(line, " decoded"),
        audio_packets_received: number_before(line, " received"),
        level_dbfs: level,
        line: Some(line.trim().to_string()),
    }
}

fn read(path: PathBuf) -> Result<String, HarnessError> {
    std::fs::read_to_string(&path).map_err(|source| HarnessError::Io { what: "cannot read", path, source })
}

fn format_error(path: PathBuf, what: &str) -> HarnessError {
    let source = std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    HarnessError::Io { what: "unexpected format of", path, source }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, HarnessError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = read(path.clone())?;
    // The command name (field 2) may contain spaces: fields are counted after its closing ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (field(11), field(12)) else {
        return Err(format_error(path, "no utime/stime fields"));
    };
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Ok((utime + stime) as f64 / ticks)
}

/// VmHWM (peak resident set size) of a process, in kB.
pub fn peak_rss_kb(pid: u32) -> Result<u64, HarnessError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    read(path.clone())?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format_error(path, "no VmHWM line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callee_report_is_parsed() {
        let out = "ready as monitor-proc\nincoming call from front-door\nmedia: codec Some(H264), audio 3000 sent / \
                   2990 received (far-end level -15.2 dBFS, longest gap 40 ms), video 1800 frames sent / 1795 \
                   decoded, last far-end frame #Some(1801)\nended: None\n";
        let m = parse_child_media(out);
        assert_eq!(m.frames_decoded, Some(1795));
        assert_eq!(m.audio_packets_received, Some(2990));
        assert_eq!(m.level_dbfs, Some(-15.2));
        let log = "[2026-11-27T23:59:00Z INFO  callbox::client::engine] call#1: media closed: audio 3000 sent / 2980 \
                   received, video 1800 sent / 1790 decoded (Some(H264))\nready as monitor-proc\n";
        let m = parse_child_media(log);
        assert_eq!((m.frames_decoded, m.audio_packets_received, m.level_dbfs), (Some(1790), Some(2980), None));
        assert_eq!(parse_child_media("ready as x\n"), ChildMedia::default());
    }

    #[test]
    fn our_own_process_has_cpu_time_and_a_peak_rss() {
        let pid = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_seconds(pid).unwrap() > 0.0);
        assert!(peak_rss_kb(pid).unwrap() > 0);
        assert!(cpu_seconds(u32::MAX).is_err(), "no such process");
    }
}
