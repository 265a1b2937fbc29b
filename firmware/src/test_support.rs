//! Helpers for unit tests that start programs: on the build machine they run directly; in a cross build the tests
//! run under an emulator (`cross/qemu-aarch64`, cargo's runner for aarch64), which says so through
//! `CALLBOX_TEST_RUNNER` (itself) and `CALLBOX_TEST_SYSROOT` (the target's root), so that a program of the target
//! (the test binary itself, GStreamer's tools) is started under the same emulator.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A command starting `program` of the target: a path as it is, a bare name from the target's `/usr/bin`.
pub(crate) fn target_command(program: impl AsRef<Path>) -> Command {
    let program = program.as_ref();
    match std::env::var_os("CALLBOX_TEST_RUNNER") {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            let path = match std::env::var_os("CALLBOX_TEST_SYSROOT") {
                Some(root) if program.components().count() == 1 => PathBuf::from(root).join("usr/bin").join(program),
                _ => program.to_path_buf(),
            };
            cmd.arg(path);
            cmd
        }
        None => Command::new(program),
    }
}
