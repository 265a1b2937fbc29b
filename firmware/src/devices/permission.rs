//! Device permission on Linux: may this process open a device node read-write? Asked of the kernel without
//! opening the node; a refusal is explained with the node's owner, group and mode, so an operator sees which
//! group the service user lacks.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Permission;

/// Checks whether this process may open `node` read-write. Asked of the kernel with `faccessat(..., AT_EACCESS)`
/// (the effective ids, as `open` would check them) rather than by opening: opening an ALSA PCM claims the
/// card, and the hot-plug rescan runs while calls and the chime use the devices.
pub fn check_node(node: &Path) -> Permission {
    let shown = node.display();
    let Ok(path) = std::ffi::CString::new(node.as_os_str().as_bytes()) else {
        return Permission::Unknown { reason: format!("{shown}: not a usable path") };
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::R_OK | libc::W_OK, libc::AT_EACCESS) };
    if rc == 0 {
        return Permission::Granted;
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            Permission::Denied { reason: denied_reason(node) }
        }
        Some(libc::ENOENT) => Permission::Unknown { reason: format!("{shown}: no such device node") },
        _ => Permission::Unknown { reason: format!("{shown}: {err}") },
    }
}

fn denied_reason(node: &Path) -> String {
    let shown = node.display();
    let Ok(meta) = std::fs::metadata(node) else {
        return format!("{shown}: permission denied");
    };
    // SAFETY: getuid/getgid/getgroups have no preconditions; the buffer is sized by the first call.
    let (uid, groups) = unsafe {
        let uid = libc::getuid();
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(0)];
        let got = if groups.is_empty() { 0 } else { libc::getgroups(n, groups.as_mut_ptr()) };
        groups.truncate(usize::try_from(got).unwrap_or(0));
        groups.push(libc::getgid());
        (uid, groups)
    };
    let in_group = groups.contains(&meta.gid());
    format!(
        "{shown}: permission denied (owner uid {} gid {}, mode {:04o}; this process uid {uid}{})",
        meta.uid(),
        meta.gid(),
        meta.mode() & 0o7777,
        if in_group { ", in the device's group".to_owned() } else { format!(", not in group {}", meta.gid()) }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openable_node_is_granted_and_a_missing_one_unknown() {
        let dir = std::env::temp_dir().join(format!("cbx-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let node = dir.join("video0");
        std::fs::write(&node, b"").unwrap();
        assert_eq!(check_node(&node), Permission::Granted);
        match check_node(&dir.join("video9")) {
            Permission::Unknown { reason } => assert!(reason.contains("video9"), "{reason}"),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
