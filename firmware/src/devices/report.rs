//! The text `callbox devices` prints: every camera, microphone and speaker the device manager sees,
//! the default of each kind, permission states with their reasons, and each camera's formats grouped
//! by pixel format and size — what a person checks first on a freshly flashed board.

use std::fmt::Write;

use super::{DeviceInfo, DeviceKind, DeviceManager, Permission};

fn permission_text(p: &Permission) -> String {
    match p {
        Permission::Granted => "granted".into(),
        Permission::Denied { reason } => format!("DENIED: {reason}"),
        Permission::Unknown { reason } => format!("unknown: {reason}"),
    }
}

fn formats_text(d: &DeviceInfo) -> Vec<String> {
    // One line per pixel format and size, with its frame rates.
    let mut lines: Vec<(String, Vec<u32>)> = Vec::new();
    for f in &d.formats {
        let key = format!("{} {}x{}", f.pixel_format.name(), f.width, f.height);
        match lines.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rates)) => {
                if !rates.contains(&f.fps) {
                    rates.push(f.fps);
                }
            }
            None => lines.push((key, vec![f.fps])),
        }
    }
    lines
        .into_iter()
        .map(|(k, mut rates)| {
            rates.sort_unstable();
            let rates: Vec<String> = rates.iter().map(u32::to_string).collect();
            format!("{k} @ {} fps", rates.join("/"))
        })
        .collect()
}

/// The device report.
pub fn describe(manager: &DeviceManager) -> String {
    let mut out = String::new();
    for (kind, title, list) in [
        (DeviceKind::Camera, "cameras", manager.cameras()),
        (DeviceKind::Microphone, "microphones", manager.microphones()),
        (DeviceKind::Speaker, "speakers", manager.speakers()),
    ] {
        let default = manager.default_device(kind).map(|d| d.id);
        let _ = writeln!(
            out,
            "{title}: {}",
            if list.is_empty() { "none found".to_owned() } else { list.len().to_string() }
        );
        for d in &list {
            let mark = if default.as_deref() == Some(d.id.as_str()) { "*" } else { " " };
            let node = d.node.as_ref().map(|n| format!(" [{}]", n.display())).unwrap_or_default();
            let _ = writeln!(out, "  {mark} {} — {}{node}", d.id, d.name);
            let _ = writeln!(out, "      permission: {}", permission_text(&d.permission));
            for line in formats_text(d) {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    out.push_str("(* = default)\n");
    out
}
