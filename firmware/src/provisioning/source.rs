//! Where the device credential (and a static access token) comes from: systemd's `$CREDENTIALS_DIRECTORY`
//! (`LoadCredential=`), or a file that only the service user can read. Contents are trimmed and held as a
//! `Secret`; they never reach a log line or an error message.
//!
//! File rules (`read_secret_file`): the path is opened once (following symlinks: the checks apply to the file
//! actually read, so `/etc/callbox/device-key -> /run/secrets/device-key` works and a link cannot smuggle in a
//! world-readable target), then the opened file itself is checked (`fstat`, no check-then-open race): it must be a
//! regular file, have no group or other permission bits (0600 or 0400), and be owned by this process's effective
//! uid. Anything else is refused with an error naming the file, its mode and owner, and the command that fixes it.
//!
//! systemd credentials (`systemd_credential_in`) live in a directory that systemd creates for the service alone
//! and whose access it may grant through an ACL (which shows in the group bits), so there the rules are: a regular
//! file, with no permission bits for others.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::calling::{Secret, TokenError};
use crate::client::TokenCredential;

/// The environment variable systemd sets for a service that has credentials.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// The largest credential file read (device keys and JWTs are far smaller).
pub const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

/// Why a credential could not be read. Never carries the credential's contents.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "systemd credential {name}: ${CREDENTIALS_DIRECTORY_ENV} is not set (is the service started by systemd \
         with LoadCredential={name}:/path/to/file in its unit?)"
    )]
    NoCredentialsDirectory { name: String },
    #[error("invalid systemd credential name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error(
        "systemd credential {name} not found in ${CREDENTIALS_DIRECTORY_ENV} ({dir}): {source} (check \
         LoadCredential={name}:... in the unit)"
    )]
    MissingCredential { name: String, dir: PathBuf, source: std::io::Error },
    #[error("cannot read credential file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("credential file {path} refused: it is {kind}, not a regular file")]
    NotRegularFile { path: PathBuf, kind: &'static str },
    #[error(
        "credential file {path} refused: {problem} (mode {mode:04o}, owner {owner}); it must be readable by the \
         service user only. Run: chmod 600 {path}; chown {user} {path}"
    )]
    Insecure { path: PathBuf, problem: &'static str, mode: u32, owner: String, user: String },
    #[error("credential file {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("credential file {path} is empty")]
    Empty { path: PathBuf },
    #[error("credential file {path} is not UTF-8 text")]
    NotText { path: PathBuf },
    #[error("static token from {origin}: {source}")]
    BadStaticToken { origin: String, source: TokenError },
}

/// Where a secret is read from, as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `$CREDENTIALS_DIRECTORY/<name>`, put there by systemd's `LoadCredential=<name>:<path>`.
    Systemd { name: String },
    /// A file readable by the service user only (0600 or 0400, owned by the service user).
    File { path: PathBuf },
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Systemd { name } => write!(f, "systemd credential {name}"),
            CredentialSource::File { path } => write!(f, "file {}", path.display()),
        }
    }
}

impl CredentialSource {
    /// Reads the secret; a systemd credential is looked up in `$CREDENTIALS_DIRECTORY`.
    pub fn load(&self) -> Result<Secret, CredentialError> {
        self.load_in(credentials_directory_from_env().as_deref())
    }

    /// Reads the secret, with the systemd credentials directory given explicitly (`None`: not under systemd).
    pub fn load_in(&self, credentials_dir: Option<&Path>) -> Result<Secret, CredentialError> {
        match self {
            CredentialSource::Systemd { name } => systemd_credential_in(credentials_dir, name),
            CredentialSource::File { path } => read_secret_file(path),
        }
    }
}

/// `$CREDENTIALS_DIRECTORY`, when set and not empty.
pub fn credentials_directory_from_env() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The systemd credential `name` from `$CREDENTIALS_DIRECTORY`.
pub fn systemd_credential(name: &str) -> Result<Secret, CredentialError> {
    systemd_credential_in(credentials_directory_from_env().as_deref(), name)
}

/// The systemd credential `name` from `credentials_dir` (`None` means the variable is not set).
pub fn systemd_credential_in(credentials_dir: Option<&Path>, name: &str) -> Result<Secret, CredentialError> {
    let invalid = |reason| CredentialError::InvalidName { name: name.to_string(), reason };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(invalid("a credential name is a single file name"));
    }
    let Some(dir) = credentials_dir else {
        return Err(CredentialError::NoCredentialsDirectory { name: name.to_string() });
    };
    let path = dir.join(name);
    let file = match open_nonblocking(&path) {
        Ok(f) => f,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(CredentialError::MissingCredential { name: name.to_string(), dir: dir.to_path_buf(), source })
        }
        Err(source) => return Err(CredentialError::Read { path, source }),
    };
    let meta = file.metadata().map_err(|source| CredentialError::Read { path: path.clone(), source })?;
    check_kind(&path, &meta)?;
    if meta.mode() & 0o007 != 0 {
        return Err(insecure(&path, &meta, "other users have access to it"));
    }
    read_contents(&path, file)
}

/// A secret from a file that must be a regular file of mode 0600 or 0400 owned by this process's effective uid
/// (see the module comment for symlinks). Contents are trimmed.
pub fn read_secret_file(path: &Path) -> Result<Secret, CredentialError> {
    let file = open_nonblocking(path).map_err(|source| CredentialError::Read { path: path.to_path_buf(), source })?;
    let meta = file.metadata().map_err(|source| CredentialError::Read { path: path.to_path_buf(), source })?;
    check_kind(path, &meta)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if let Some(problem) = permission_problem(meta.mode(), meta.uid(), euid) {
        return Err(insecure(path, &meta, problem));
    }
    read_contents(path, file)
}

/// A static user access token (a JWT) from `source`, for deployments without a token endpoint: it is used until
/// it expires. The file rules are those of the device credential.
pub fn static_token(source: &CredentialSource) -> Result<TokenCredential, CredentialError> {
    static_token_from(&source.load()?, source)
}

/// A static token credential from an already-loaded secret; `origin` names where it came from in errors.
pub fn static_token_from(token: &Secret, origin: &CredentialSource) -> Result<TokenCredential, CredentialError> {
    TokenCredential::from_static(token.expose())
        .map_err(|source| CredentialError::BadStaticToken { origin: origin.to_string(), source })
}

/// What is wrong with a credential file's mode and owner, if anything (pure: unit-tested).
pub fn permission_problem(mode: u32, owner_uid: u32, euid: u32) -> Option<&'static str> {
    if mode & 0o077 != 0 {
        Some("group or other users have access to it")
    } else if owner_uid != euid {
        Some("it is not owned by the service user")
    } else {
        None
    }
}

/// Opens for reading without blocking on a FIFO (which `check_kind` then refuses).
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

fn check_kind(path: &Path, meta: &std::fs::Metadata) -> Result<(), CredentialError> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(CredentialError::NotRegularFile { path: path.to_path_buf(), kind })
}

fn insecure(path: &Path, meta: &std::fs::Metadata, problem: &'static str) -> CredentialError {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    CredentialError::Insecure {
        path: path.to_path_buf(),
        problem,
        mode: meta.mode() & 0o7777,
        owner: describe_uid(meta.uid()),
        user: user_name(euid).unwrap_or_else(|| euid.to_string()),
    }
}

fn read_contents(path: &Path, file: File) -> Result<Secret, CredentialError> {
    let mut buf = Vec::new();
    // One byte more than the cap tells a file at the cap from a larger one.
    file.take(MAX_CREDENTIAL_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| CredentialError::Read { path: path.to_path_buf(), source })?;
    if buf.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Err(CredentialError::TooLarge { path: path.to_path_buf(), max: MAX_CREDENTIAL_BYTES });
    }
    let text = String::from_utf8(buf).map_err(|_| CredentialError::NotText { path: path.to_path_buf() })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(CredentialError::Empty { path: path.to_path_buf() });
    }
    Ok(Secret::new(trimmed))
}

/// `uid 0 (root)`, or `uid 1234` when the uid has no passwd entry.
fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The user name of `uid` from the passwd database, if any.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // Entries larger than this (huge gecos fields) are not worth more memory: fall back to the number.
    const MAX_BUF: usize = 64 * 1024;
    loop {
        // SAFETY: passwd is plain data; zeroed is a valid initial value that getpwuid_r overwrites.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live memory of the stated size for the duration of the call.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`, alive here.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return name.to_str().ok().map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_rules() {
        assert_eq!(permission_problem(0o100600, 1000, 1000), None);
        assert_eq!(permission_problem(0o100400, 1000, 1000), None);
        assert_eq!(permission_problem(0o100200, 0, 0), None);
        assert!(permission_problem(0o100644, 1000, 1000).unwrap().contains("other"));
        assert!(permission_problem(0o100640, 1000, 1000).unwrap().contains("group"));
        assert!(permission_problem(0o100604, 1000, 1000).is_some());
        assert!(permission_problem(0o100600, 0, 1000).unwrap().contains("not owned"));
    }

    #[test]
    fn systemd_names_are_single_file_names() {
        let dir = Path::new("/nonexistent-credentials");
        for bad in ["", ".", "..", "a/b", "../etc/shadow"] {
            let e = systemd_credential_in(Some(dir), bad).unwrap_err();
            assert!(matches!(e, CredentialError::InvalidName { .. }), "{bad}: {e}");
        }
        let e = systemd_credential_in(None, "device-key").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("$CREDENTIALS_DIRECTORY") && msg.contains("device-key"), "{msg}");
        let e = systemd_credential_in(Some(dir), "device-key").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CredentialError::MissingCredential { .. }), "{msg}");
        assert!(msg.contains("/nonexistent-credentials") && msg.contains("device-key"), "{msg}");
    }

    #[test]
    fn source_display_names_the_origin() {
        assert_eq!(CredentialSource::Systemd { name: "k".into() }.to_string(), "systemd credential k");
        assert_eq!(CredentialSource::File { path: "/etc/k".into() }.to_string(), "file /etc/k");
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(describe_uid(0), "uid 0 (root)");
    }
}
