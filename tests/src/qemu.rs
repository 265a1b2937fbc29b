//! `QemuBoard`: the QEMU board image (`tests/qemu/build-image`) booted as one of a test's appliances.
//!
//! - The guest's network is a tap device made in the test's namespace (`cbx-*`, a private /24 that exists nowhere
//!   else); the guest reaches the stack through forwarders the test listens with on the tap's address.
//! - Provisioning (`/etc/callbox/callbox.toml`, the device key) is a second `newc` archive appended to the image's
//!   initramfs, as a board is provisioned after it is flashed.
//! - The guest's PID 1 is systemd; the firmware runs from the image's `callbox.service` (board/systemd).
//! - The serial console (the kernel's log and the journal, which the image forwards there: systemd's and the
//!   firmware's lines) is read line by line; the control shell on the virtio console runs commands as root in the
//!   guest (gpio-sim pulls, reading LEDs, /proc, systemctl); the QEMU monitor saves the virtio-gpu framebuffer
//!   (`screendump`) so that the guest's screen is checked from outside.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::error::HarnessError;

fn guest_error(what: &str, reason: impl std::fmt::Display) -> HarnessError {
    HarnessError::Guest { what: what.to_string(), reason: reason.to_string() }
}

/// The guest's link: a tap device of the test's namespace, the host's end of it, and the guest's address.
#[derive(Debug, Clone)]
pub struct GuestNet {
    pub tap: String,
    pub host: Ipv4Addr,
    pub guest: Ipv4Addr,
    pub prefix_len: u8,
}

impl GuestNet {
    /// Makes the tap device `tap` (it must start with `cbx-`) with `host`/`prefix_len` on it, inside the test's
    /// namespace (the harness refuses to run anywhere else). Before the stack starts, so that Janus gathers on it.
    pub fn create(tap: &str, host: Ipv4Addr, guest: Ipv4Addr, prefix_len: u8) -> Result<Self, HarnessError> {
        crate::netns::check()?;
        if !tap.starts_with(crate::netns::TEST_DEVICE_PREFIX) {
            return Err(guest_error(
                "tap",
                format!("{tap}: test devices are named {}*", crate::netns::TEST_DEVICE_PREFIX),
            ));
        }
        let run = |args: &[&str]| -> Result<(), HarnessError> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| guest_error("tap", format!("cannot run ip: {e}")))?;
            if !out.status.success() {
                return Err(guest_error(
                    "tap",
                    format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
                ));
            }
            Ok(())
        };
        run(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        run(&["addr", "add", &format!("{host}/{prefix_len}"), "dev", tap])?;
        run(&["link", "set", tap, "up"])?;
        Ok(GuestNet { tap: tap.to_string(), host, guest, prefix_len })
    }
}

/// A `newc` (SVR4, no CRC) cpio archive of files and folders, all owned by root, built in memory.
#[derive(Default)]
pub struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, body.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    /// A folder (`0o040000 | perm`).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, 0o040_000 | perm, &[]);
    }

    /// A regular file (`0o100000 | perm`).
    pub fn file(&mut self, name: &str, perm: u32, body: &[u8]) {
        self.entry(name, 0o100_000 | perm, body);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.data
    }
}

/// A screen saved by the monitor: packed RGB, 8 bits a channel.
pub struct Screendump {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Screendump {
    /// Parses a binary PPM (P6, maxval 255) as QEMU writes it.
    pub fn parse_ppm(bytes: &[u8]) -> Result<Self, HarnessError> {
        let bad = |why: &str| guest_error("screendump", why);
        let mut fields = Vec::new();
        let mut pos = 0;
        while fields.len() < 4 {
            while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
                pos += 1;
            }
            let start = pos;
            while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if start == pos {
                return Err(bad("truncated header"));
            }
            fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
        }
        pos += 1;
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad("bad number in header"));
        if fields[0] != "P6" || num(&fields[3])? != 255 {
            return Err(bad("not a P6 PPM with maxval 255"));
        }
        let (width, height) = (num(&fields[1])?, num(&fields[2])?);
        let len = width as usize * height as usize * 3;
        let rgb = bytes.get(pos..pos + len).ok_or_else(|| bad("short pixel data"))?.to_vec();
        Ok(Screendump { width, height, rgb })
    }

    /// The luma (BT.601, as the firmware's own conversion) of the pixel at `x`, `y`.
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let (r, g, b) = (u32::from(self.rgb[i]), u32::from(self.rgb[i + 1]), u32::from(self.rgb[i + 2]));
        callbox::display::scale::rgb_to_luma((r << 16) | (g << 8) | b)
    }
}

/// What the image needs from the test to boot.
pub struct BootOptions<'a> {
    /// `target/qemu/image`: `vmlinuz` and `rootfs.cpio`.
    pub image_dir: &'a Path,
    /// Where the sockets, the provisioned initramfs and the console log go.
    pub dir: &'a Path,
    /// The provisioning archive appended to the image's.
    pub provisioning: Vec<u8>,
    pub net: &'a GuestNet,
    /// The framebuffer's size (virtio-gpu's display).
    pub screen: (u32, u32),
    /// Guest CPUs and memory (MiB).
    pub cpus: u32,
    pub memory_mib: u32,
    /// Added to the kernel command line (e.g. `systemd.log_level=debug`).
    pub extra_cmdline: &'a str,
}

/// A booted guest. Dropping it kills QEMU.
pub struct QemuBoard {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    history: Arc<Mutex<Vec<String>>>,
    control: Option<BufReader<UnixStream>>,
    control_path: PathBuf,
    monitor_path: PathBuf,
    /// The image with the provisioning appended (~270 MB), removed on drop even when the stack directory is kept.
    initrd_path: PathBuf,
    commands: u32,
    started: Instant,
}

impl Drop for QemuBoard {
    fn drop(&mut self) {
        // QEMU (killed right after, with the child) keeps its open copy; the file itself is only derived data.
        let _ = std::fs::remove_file(&self.initrd_path);
    }
}

impl QemuBoard {
    /// Starts `qemu-system-aarch64 -M virt` on the image with the provisioning appended.
    pub fn boot(o: BootOptions<'_>) -> Result<Self, HarnessError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| HarnessError::Io { what, path, source }
        };
        let rootfs = o.image_dir.join("rootfs.cpio");
        let mut initrd = std::fs::read(&rootfs).map_err(io("cannot read (run tests/qemu/build-image)", &rootfs))?;
        initrd.extend_from_slice(&o.provisioning);
        let initrd_path = o.dir.join("board-initrd.cpio");
        std::fs::write(&initrd_path, &initrd).map_err(io("cannot write", &initrd_path))?;
        let control_path = o.dir.join("board-control.sock");
        let monitor_path = o.dir.join("board-monitor.sock");
        let net = o.net;
        // net.ifnames=0: udev keeps the kernel's name eth0, which the image's network unit configures.
        let cmdline = format!(
            "console=ttyAMA0 quiet panic=-1 net.ifnames=0 callbox.ip={}/{} callbox.gw={} {}",
            net.guest, net.prefix_len, net.host, o.extra_cmdline
        );
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(["-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg,thread=multi"])
            .args(["-smp", &o.cpus.to_string(), "-m", &o.memory_mib.to_string()])
            .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(o.image_dir.join("vmlinuz"))
            .arg("-initrd")
            .arg(&initrd_path)
            .args(["-append", &cmdline])
            .args(["-netdev", &format!("tap,id=net0,ifname={},script=no,downscript=no", net.tap)])
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
            .args(["-device", &format!("virtio-gpu-pci,xres={},yres={}", o.screen.0, o.screen.1)])
            .args(["-device", "virtio-serial-pci"])
            .args(["-chardev", &format!("socket,id=ctl,path={},server=on,wait=off", control_path.display())])
            .args(["-device", "virtconsole,chardev=ctl"])
            .args(["-monitor", &format!("unix:{},server=on,wait=off", monitor_path.display())])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            name: "qemu".into(),
            program: "qemu-system-aarch64",
            source,
        })?;
        let started = Instant::now();
        let history: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, lines) = mpsc::unbounded_channel();
        let log_path = o.dir.join("board-console.log");
        let mut log = std::fs::File::create(&log_path).map_err(io("cannot create", &log_path))?;
        let stdout = child.stdout.take().ok_or_else(|| guest_error("console", "no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| guest_error("console", "no stderr"))?;
        let keep = history.clone();
        tokio::spawn(async move {
            use std::io::Write;
            let mut out = BufReader::new(stdout).lines();
            let mut err = BufReader::new(stderr).lines();
            let mut err_open = true;
            loop {
                let line = tokio::select! {
                    l = out.next_line() => match l { Ok(Some(l)) => l, _ => break },
                    l = err.next_line(), if err_open => match l {
                        Ok(Some(l)) => format!("qemu: {l}"),
                        _ => { err_open = false; continue }
                    },
                };
                let line = line.trim_end_matches('\r').to_string();
                let _ = writeln!(log, "{:8.3} {line}", started.elapsed().as_secs_f64());
                crate::baresip_lock(&keep).push(line.clone());
                let _ = tx.send(line);
            }
        });
        Ok(QemuBoard {
            child,
            lines,
            history,
            control: None,
            control_path,
            monitor_path,
            initrd_path,
            commands: 0,
            started,
        })
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for a console line containing `needle`; returns it.
    pub async fn wait_console(&mut self, needle: &str, timeout: Duration) -> Result<String, HarnessError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return Ok(line),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(guest_error("console", format!("QEMU exited ({status:?}) before `{needle}`")));
                }
                Err(_) => return Err(guest_error("console", format!("no `{needle}` within {timeout:?}"))),
            }
        }
    }

    /// Every console line so far.
    pub fn console(&self) -> Vec<String> {
        crate::baresip_lock(&self.history).clone()
    }

    /// Runs `command` in the guest's control shell (root, /bin/sh); returns its output and exit code.
    pub async fn shell(&mut self, command: &str, timeout: Duration) -> Result<(String, i32), HarnessError> {
        if self.control.is_none() {
            let deadline = Instant::now() + timeout;
            let stream = loop {
                match UnixStream::connect(&self.control_path).await {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => return Err(guest_error("control shell", e)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            self.control = Some(BufReader::new(stream));
        }
        let control = self.control.as_mut().ok_or_else(|| guest_error("control shell", "not connected"))?;
        self.commands += 1;
        let n = self.commands;
        // The marker is printed by printf from pieces, so an echo of the command line never matches it.
        let line = format!("{command}\nprintf '__cbx_%s_%s %s\\n' done {n} $?\n");
        control.get_mut().write_all(line.as_bytes()).await.map_err(|e| guest_error("control shell", e))?;
        let marker = format!("__cbx_done_{n} ");
        let mut output = String::new();
        let read = async {
            loop {
                let mut l = String::new();
                if control.read_line(&mut l).await.map_err(|e| guest_error("control shell", e))? == 0 {
                    return Err(guest_error("control shell", "closed"));
                }
                let l = l.trim_end_matches(['\r', '\n']);
                if let Some(code) = l.split_once(&marker).map(|(_, c)| c) {
                    return Ok(code.trim().parse::<i32>().unwrap_or(-1));
                }
                output.push_str(l);
                output.push('\n');
            }
        };
        let code = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| guest_error("control shell", format!("`{command}` did not finish within {timeout:?}")))??;
        Ok((output, code))
    }

    /// Saves the guest's screen (the virtio-gpu scanout) through the monitor and reads it back.
    pub async fn screendump(&self, path: &Path) -> Result<Screendump, HarnessError> {
        let _ = std::fs::remove_file(path);
        let mut mon = UnixStream::connect(&self.monitor_path).await.map_err(|e| guest_error("monitor", e))?;
        let mut reply = Vec::new();
        let cmd = format!("screendump {}\n", path.display());
        mon.write_all(cmd.as_bytes()).await.map_err(|e| guest_error("monitor", e))?;
        // HMP answers with its banner and prompts; the file is complete once the prompt after the command is back.
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            let mut buf = [0u8; 4096];
            loop {
                let n = mon.read(&mut buf).await.map_err(|e| guest_error("monitor", e))?;
                if n == 0 {
                    return Err(guest_error("monitor", "closed"));
                }
                reply.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&reply);
                if text.matches("(qemu)").count() >= 2 {
                    return Ok(());
                }
            }
        })
        .await;
        waited.map_err(|_| guest_error("monitor", "no prompt after screendump"))??;
        let bytes = std::fs::read(path).map_err(|source| HarnessError::Io {
            what: "screendump not written",
            path: path.to_path_buf(),
            source,
        })?;
        Screendump::parse_ppm(&bytes)
    }

    /// Powers the guest off (if the control shell answers) and waits for QEMU to exit; kills it otherwise.
    pub async fn shutdown(mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.shell("sync; poweroff -f", Duration::from_secs(5))).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.dir("etc", 0o755);
        c.file("etc/key", 0o600, b"abc");
        let a = c.finish();
        assert_eq!(&a[..6], b"070701");
        assert_eq!(a.len() % 4, 0);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("etc/key\0") && text.contains("abc") && text.ends_with("TRAILER!!!\0\0\0\0"));
        // The file's mode field (second field) says a regular file 0600.
        let second = a.windows(7).position(|w| w == b"etc/key").unwrap();
        let header = &a[second - 110..second];
        assert_eq!(&header[14..22], b"00008180");
    }

    #[test]
    fn ppm_is_parsed_and_luma_read() {
        let mut ppm = b"P6\n2 1\n255\n".to_vec();
        ppm.extend_from_slice(&[255, 255, 255, 0, 0, 0]);
        let s = Screendump::parse_ppm(&ppm).unwrap();
        assert_eq!((s.width, s.height), (2, 1));
        assert!(s.luma(0, 0) > 230 && s.luma(1, 0) < 20);
        assert!(Screendump::parse_ppm(b"P6\n2 1\n255\n\x00").is_err());
        assert!(Screendump::parse_ppm(b"P5\n2 1\n255\n\x00\x00").is_err());
    }
}
