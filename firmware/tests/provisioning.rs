//! Provisioned credentials end to end, on 127.0.0.1 only: credential file permission rules (we run as root, so
//! "owned by someone else" is made with chown), systemd's `$CREDENTIALS_DIRECTORY` (the environment variant runs
//! in a child process of its own), static tokens, and the HTTPS token client against the reference token service
//! in TLS mode with a private CA made by rcgen: pinned CA, untrusted CA, wrong host, wrong key, outage and
//! recovery, and plain HTTP refused unless allowed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callbox::calling::{AccessToken, Backoff, RefreshPolicy, Secret, TokenError};
use callbox::provisioning::{
    read_secret_file, static_token, systemd_credential, systemd_credential_in, token_credential, CredentialError,
    CredentialSource, EndpointConfig, TokenClientError, TokenEndpoint,
};
use callbox_tokensvc::{Secrets, ServiceConfig, TokenService};

const DEVICE_KEY: &str = "front-door-device-key-7f3a";

/// A fresh, empty directory for one test (removed when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("callbox-credentials-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn credential_file_permissions_are_enforced() {
    let dir = TempDir::new("perms");

    // 0644: refused, naming the file, its mode, its owner and the fix.
    let open = dir.file("world-readable.key", "s3cr3t-world\n", 0o644);
    let e = read_secret_file(&open).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CredentialError::Insecure { mode: 0o644, .. }), "{msg}");
    for needle in [open.display().to_string(), "0644".into(), "owner uid".into(), "chmod 600".into(), "chown".into()] {
        assert!(msg.contains(&needle), "{needle:?} missing from: {msg}");
    }
    assert!(!msg.contains("s3cr3t"), "{msg}");

    // Group bits are refused too.
    let group = dir.file("group.key", "s3cr3t", 0o640);
    assert!(matches!(read_secret_file(&group), Err(CredentialError::Insecure { mode: 0o640, .. })));

    // 0600 and 0400 owned by us: accepted, trimmed.
    let good = dir.file("good.key", "  s3cr3t-good \n", 0o600);
    assert_eq!(read_secret_file(&good).unwrap().expose(), "s3cr3t-good");
    let ro = dir.file("readonly.key", "s3cr3t-ro", 0o400);
    assert_eq!(read_secret_file(&ro).unwrap().expose(), "s3cr3t-ro");

    // A symlink is followed and the target is what gets checked.
    let link_good = dir.path().join("link-good.key");
    std::os::unix::fs::symlink(&good, &link_good).unwrap();
    assert_eq!(read_secret_file(&link_good).unwrap().expose(), "s3cr3t-good");
    let link_open = dir.path().join("link-open.key");
    std::os::unix::fs::symlink(&open, &link_open).unwrap();
    let e = read_secret_file(&link_open).unwrap_err();
    assert!(matches!(e, CredentialError::Insecure { mode: 0o644, .. }), "{e}");
    assert!(e.to_string().contains("link-open.key"), "{e}");

    // A directory, an empty file and a missing file are refused, naming the path.
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    let e = read_secret_file(&sub).unwrap_err();
    assert!(matches!(e, CredentialError::NotRegularFile { kind: "a directory", .. }), "{e}");
    assert!(e.to_string().contains("a-directory"), "{e}");
    let empty = dir.file("empty.key", " \n", 0o600);
    assert!(matches!(read_secret_file(&empty), Err(CredentialError::Empty { .. })));
    let e = read_secret_file(&dir.path().join("missing.key")).unwrap_err();
    assert!(matches!(e, CredentialError::Read { .. }) && e.to_string().contains("missing.key"), "{e}");

    // Owned by another uid (nobody): refused, naming the owner.
    if is_root() {
        let theirs = dir.file("theirs.key", "s3cr3t-theirs", 0o600);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = read_secret_file(&theirs).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CredentialError::Insecure { mode: 0o600, .. }), "{msg}");
        assert!(msg.contains("not owned by the service user") && msg.contains("uid 65534"), "{msg}");
        assert!(msg.contains("chown root"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    } else {
        eprintln!("not root: the foreign-owner case is skipped");
    }

    // Through `CredentialSource` as the configuration names it.
    let src = CredentialSource::File { path: good.clone() };
    assert_eq!(src.load().unwrap().expose(), "s3cr3t-good");
}

#[test]
fn systemd_credentials_directory_is_searched() {
    let dir = TempDir::new("systemd");
    // systemd's files are 0400 (0440 when access is granted through an ACL).
    dir.file("device-key", "s3cr3t-systemd\n", 0o400);
    dir.file("acl-key", "s3cr3t-acl", 0o440);
    dir.file("leaky-key", "s3cr3t-leaky", 0o444);
    assert_eq!(systemd_credential_in(Some(dir.path()), "device-key").unwrap().expose(), "s3cr3t-systemd");
    assert_eq!(systemd_credential_in(Some(dir.path()), "acl-key").unwrap().expose(), "s3cr3t-acl");
    let e = systemd_credential_in(Some(dir.path()), "leaky-key").unwrap_err();
    assert!(matches!(e, CredentialError::Insecure { .. }), "{e}");

    let e = systemd_credential_in(Some(dir.path()), "other-key").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CredentialError::MissingCredential { .. }), "{msg}");
    assert!(msg.contains("other-key") && msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("LoadCredential=other-key"), "{msg}");

    let e = systemd_credential_in(None, "device-key").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CredentialError::NoCredentialsDirectory { .. }), "{msg}");
    assert!(msg.contains("$CREDENTIALS_DIRECTORY") && msg.contains("device-key"), "{msg}");

    let src = CredentialSource::Systemd { name: "device-key".into() };
    assert_eq!(src.load_in(Some(dir.path())).unwrap().expose(), "s3cr3t-systemd");
}

const CHILD_MARKER: &str = "CALLBOX_CREDENTIALS_TEST_CHILD";

/// Runs only as the child of `systemd_credentials_from_the_environment` (with `$CREDENTIALS_DIRECTORY` set in its
/// own environment, so that no test thread of the parent races on the process environment).
#[test]
fn systemd_env_child() {
    let Some(expected) = std::env::var_os(CHILD_MARKER) else { return };
    let got = systemd_credential("device-key").unwrap();
    assert_eq!(got.expose(), expected.to_str().unwrap());
    let src = CredentialSource::Systemd { name: "device-key".into() };
    assert_eq!(src.load().unwrap().expose(), expected.to_str().unwrap());
    println!("child: systemd credential found");
}

#[test]
fn systemd_credentials_from_the_environment() {
    let dir = TempDir::new("systemd-env");
    dir.file("device-key", "s3cr3t-from-env\n", 0o400);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "systemd_env_child", "--nocapture", "--test-threads=1"])
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .env(CHILD_MARKER, "s3cr3t-from-env")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("child: systemd credential found"), "{stdout}");
}

fn service_config() -> ServiceConfig {
    let mut c = ServiceConfig::new(
        Secrets {
            jwt_secret: Secret::new("jwt-secret"),
            janus_secret: Secret::new("janus-secret"),
            sip_secret: Secret::new("sip-secret"),
        },
        "callbox.test",
        "sip:127.0.0.1:5060",
    );
    c.devices.push((Secret::new(DEVICE_KEY), "alice".into()));
    c
}

#[test]
fn static_token_files_follow_the_same_rules() {
    let dir = TempDir::new("static");
    let params = callbox_tokensvc::MintParams::new("frontdoor", 3600, "callbox.test", "sip:127.0.0.1:5060");
    let jwt = callbox_tokensvc::mint(&service_config().secrets, &params, callbox_tokensvc::token::now_unix());
    let good = dir.file("token.jwt", &format!("{jwt}\n"), 0o600);
    let cred = static_token(&CredentialSource::File { path: good }).unwrap();
    assert!(!cred.can_refresh());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_eq!(rt.block_on(cred.get()).unwrap().user(), "frontdoor");

    let open = dir.file("open.jwt", &jwt, 0o644);
    let e = static_token(&CredentialSource::File { path: open }).unwrap_err();
    assert!(matches!(e, CredentialError::Insecure { .. }), "{e}");
    assert!(!e.to_string().contains(&jwt));

    let junk = dir.file("junk.jwt", "not-a-jwt", 0o600);
    let e = static_token(&CredentialSource::File { path: junk.clone() }).unwrap_err();
    assert!(matches!(e, CredentialError::BadStaticToken { source: TokenError::NotAJwt, .. }), "{e}");
    assert!(e.to_string().contains(&junk.display().to_string()), "{e}");
}

/// A private CA and server certificates signed by it.
struct Pki {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// (certificate chain PEM, private key PEM) for the given names and addresses.
    fn server(&self, names: &[&str]) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn tls_service(pki: &Pki, names: &[&str]) -> TokenService {
    let (chain, key) = pki.server(names);
    TokenService::start_tls(service_config(), "127.0.0.1:0".parse().unwrap(), &chain, &key).await.unwrap()
}

fn pinned(url: String, ca_file: &Path) -> TokenEndpoint {
    TokenEndpoint::new(&EndpointConfig { ca_file: Some(ca_file.to_path_buf()), ..EndpointConfig::new(url) }).unwrap()
}

fn localhost_url(svc: &TokenService) -> String {
    format!("https://localhost:{}/v1/token", svc.local_addr().port())
}

#[tokio::test]
async fn https_with_the_pinned_ca_fetches_a_token() {
    let dir = TempDir::new("https-ok");
    let pki = Pki::new("callbox test CA");
    let ca = dir.file("ca.pem", &pki.ca_pem, 0o644);
    let svc = tls_service(&pki, &["localhost", "127.0.0.1"]).await;
    let key = Secret::new(DEVICE_KEY);

    for url in [localhost_url(&svc), svc.url()] {
        assert!(url.starts_with("https://"), "{url}");
        let ep = pinned(url.clone(), &ca);
        assert!(ep.is_tls());
        let jwt = ep.fetch(&key).await.unwrap();
        let token = AccessToken::parse(jwt.expose()).unwrap();
        assert_eq!(token.user(), "alice", "{url}");
        assert_eq!(token.sip().unwrap().uri, "sip:alice@callbox.test");
        assert!(token.janus().unwrap().token.expose().contains(",janus,janus.plugin.sip"));
        assert!(!token.is_expired(callbox_tokensvc::token::now_unix()));
    }
    assert!(!format!("{:?}", pinned(svc.url(), &ca)).contains(DEVICE_KEY));
}

#[tokio::test]
async fn https_refuses_an_untrusted_ca_and_a_wrong_host() {
    let dir = TempDir::new("https-bad");
    let pki = Pki::new("callbox test CA");
    let other = Pki::new("someone else's CA");
    let other_ca = dir.file("other-ca.pem", &other.ca_pem, 0o644);
    let ca = dir.file("ca.pem", &pki.ca_pem, 0o644);
    let svc = tls_service(&pki, &["localhost", "127.0.0.1"]).await;
    let key = Secret::new(DEVICE_KEY);

    // Pinned to another CA: the service's chain is not trusted (pinning excludes every other root).
    let e = pinned(localhost_url(&svc), &other_ca).fetch(&key).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TokenClientError::Tls { .. }), "{msg}");
    assert!(msg.contains("not trusted by the pinned CA") && msg.contains("other-ca.pem"), "{msg}");
    assert!(!e.is_retryable());
    assert!(!msg.contains(DEVICE_KEY));

    // The system roots do not trust a private CA either.
    match TokenEndpoint::new(&EndpointConfig::new(localhost_url(&svc))) {
        Ok(ep) => {
            let e = ep.fetch(&key).await.unwrap_err();
            assert!(matches!(e, TokenClientError::Tls { .. }), "{e}");
            assert!(e.to_string().contains("not trusted by the system roots"), "{e}");
        }
        Err(e) => assert!(matches!(e, TokenClientError::NoSystemRoots { .. }), "{e}"),
    }

    // Host name verification: a certificate for another name, from the trusted CA, is refused.
    let elsewhere = tls_service(&pki, &["tokens.elsewhere.test"]).await;
    let e = pinned(localhost_url(&elsewhere), &ca).fetch(&key).await.unwrap_err();
    assert!(matches!(e, TokenClientError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("not valid for the host localhost"), "{e}");
    // ...and so is an IP address the certificate does not name.
    let e = pinned(elsewhere.url(), &ca).fetch(&key).await.unwrap_err();
    assert!(e.to_string().contains("not valid for the host 127.0.0.1"), "{e}");
}

#[tokio::test]
async fn https_wrong_device_key_is_unauthorized() {
    let dir = TempDir::new("https-401");
    let pki = Pki::new("callbox test CA");
    let ca = dir.file("ca.pem", &pki.ca_pem, 0o644);
    let svc = tls_service(&pki, &["localhost"]).await;
    let e = pinned(localhost_url(&svc), &ca).fetch(&Secret::new("not-the-key")).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TokenClientError::Unauthorized { status: 401, .. }), "{msg}");
    assert!(msg.contains("device key refused") && !msg.contains("not-the-key"), "{msg}");
    assert!(!e.is_retryable());
}

fn policy(attempts: u32) -> RefreshPolicy {
    RefreshPolicy {
        retry: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            max_attempts: Some(attempts),
        },
        ..RefreshPolicy::default()
    }
}

#[tokio::test]
async fn token_endpoint_outage_is_survived_and_recovered() {
    let dir = TempDir::new("https-outage");
    let pki = Pki::new("callbox test CA");
    let ca = dir.file("ca.pem", &pki.ca_pem, 0o644);
    let svc = tls_service(&pki, &["localhost"]).await;
    let ep = pinned(localhost_url(&svc), &ca);
    let key = Secret::new(DEVICE_KEY);

    // The plain client: down is a retryable connect error; it works again once the service is back.
    ep.fetch(&key).await.unwrap();
    svc.stop().await;
    let e = ep.fetch(&key).await.unwrap_err();
    assert!(matches!(e, TokenClientError::Connect { .. }), "{e}");
    assert!(e.is_retryable());
    svc.restart().await.unwrap();
    assert_eq!(AccessToken::parse(ep.fetch(&key).await.unwrap().expose()).unwrap().user(), "alice");

    // The refreshing credential: a refresh that meets the outage retries with backoff until the service is back.
    let cred = token_credential(ep.clone(), key.clone(), policy(40));
    let first = cred.get().await.unwrap();
    assert_eq!(first.user(), "alice");
    svc.stop().await;
    svc.set_ttl(Duration::from_secs(1234));
    let restarter = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        svc.restart().await.unwrap();
    };
    let (refreshed, ()) = tokio::join!(cred.refresh(), restarter);
    let refreshed = refreshed.unwrap();
    let lifetime = refreshed.expires_at() - refreshed.claims().iat.unwrap();
    assert_eq!(lifetime, 1234, "the token came from the restarted service");

    // A bounded refresh gives up with a clear error that hides the key.
    let short = token_credential(ep.clone(), key.clone(), policy(2));
    svc.stop().await;
    let e = short.get().await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TokenError::RefreshFailed(_)), "{msg}");
    assert!(msg.contains("cannot connect to token endpoint"), "{msg}");
    assert!(!msg.contains(DEVICE_KEY), "{msg}");
    svc.restart().await.unwrap();
    assert_eq!(short.get().await.unwrap().user(), "alice");
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    let svc = TokenService::start(service_config(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert!(svc.url().starts_with("http://"));
    let e = TokenEndpoint::new(&EndpointConfig::new(svc.url())).unwrap_err();
    assert!(matches!(e, TokenClientError::InsecureHttp { .. }), "{e}");
    assert!(e.to_string().contains("https://"), "{e}");

    let ep =
        TokenEndpoint::new(&EndpointConfig { allow_insecure_http: true, ..EndpointConfig::new(svc.url()) }).unwrap();
    assert!(!ep.is_tls());
    let jwt = ep.fetch(&Secret::new(DEVICE_KEY)).await.unwrap();
    assert_eq!(AccessToken::parse(jwt.expose()).unwrap().user(), "alice");

    let e = TokenEndpoint::new(&EndpointConfig::new("ftp://127.0.0.1/")).unwrap_err();
    assert!(matches!(e, TokenClientError::InvalidUrl { .. }), "{e}");
}
