//! `Stack`: one complete backend for a test — Kamailio, Janus and the token endpoint on fresh 127.0.0.1 ports,
//! with fresh secrets (and a fresh videoroom admin key, the room grant of the devices allowed to create rooms) and a temp dir holding configs and logs — plus the baresip peers started on it.
//! Dropping it kills every process it started and removes the temp dir (kept, with the log tails printed, when
//! the test panics or `CALLBOX_KEEP_STACK=1`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbox::signaling::{registration, SipRegister};
use callbox_calling::token::SipGrant;
use callbox_calling::Secret;
use callbox_tokensvc::{
    janus_signed_token, sip_ephemeral_credentials, token::now_unix, Device, Secrets, ServiceConfig, SipCredentials,
    TokenService, DEFAULT_PLUGINS,
};
use rand::distr::{Alphanumeric, SampleString};

use crate::baresip::{Baresip, BaresipOptions, BaresipRole, Launch};
use crate::error::HarnessError;
use crate::process::ServerProcess;
use crate::{janus, kamailio, netns, ports};

static STACK_COUNT: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug)]
pub struct StackOptions {
    /// SIP domain and digest realm.
    pub domain: String,
    /// A server whose log grows past this many bytes is killed and reported (runaway loop).
    pub log_limit: u64,
    /// Readiness timeout for each server.
    pub start_timeout: Duration,
    /// Default lifetime of tokens served by the token endpoint.
    pub token_ttl: Duration,
    /// Kamailio `debug` level (1 notice, 2 info, 3 debug).
    pub kamailio_log_level: i32,
    /// Keep the temp dir after the stack is dropped.
    pub keep_dir: bool,
    /// More interfaces Janus gathers ICE candidates on, besides the namespace's 127.0.0.1 veth: a QEMU guest's
    /// tap device (named `cbx-*`, made by the test before the stack starts).
    pub extra_ice_interfaces: Vec<String>,
    /// Kamailio's `PSTN_USERS`: the users allowed to call phone numbers (a regular expression on the user part).
    /// Every user in tests by default; the shipped config allows nobody.
    pub pstn_users: String,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            domain: "callbox.test".into(),
            log_limit: 20 * 1024 * 1024,
            start_timeout: Duration::from_secs(15),
            token_ttl: Duration::from_secs(600),
            kamailio_log_level: 2,
            keep_dir: std::env::var("CALLBOX_KEEP_STACK").as_deref() == Ok("1"),
            extra_ice_interfaces: Vec::new(),
            pstn_users: ".".into(),
        }
    }
}

pub struct Stack {
    dir: PathBuf,
    keep_dir: bool,
    opts: StackOptions,
    iface: String,
    janus_port: u16,
    kamailio_port: u16,
    trunk_port: u16,
    secrets: Secrets,
    /// Janus's videoroom `admin_key`: what a room grant carries.
    room_admin_key: Secret,
    token: TokenService,
    /// The running servers (replaced by a restart).
    janus: Mutex<Arc<ServerProcess>>,
    kamailio: Mutex<Arc<ServerProcess>>,
    /// What a restart of Janus needs again: its ICE interfaces and port ranges.
    ice_ifaces: String,
    rtp: (u16, u16),
    sip_rtp: (u16, u16),
    peers: Mutex<Vec<Arc<ServerProcess>>>,
    peer_count: AtomicU32,
}

/// Kamailio's settings for a stack in `dir`.
fn kamailio_settings<'a>(
    dir: &'a Path,
    opts: &'a StackOptions,
    port: u16,
    trunk_port: u16,
    secrets: &'a Secrets,
) -> kamailio::KamailioSettings<'a> {
    kamailio::KamailioSettings {
        dir,
        port,
        domain: &opts.domain,
        secret: secrets.sip_secret.expose(),
        trunk_port,
        pstn_users: &opts.pstn_users,
        log_level: opts.kamailio_log_level,
        log_limit: opts.log_limit,
    }
}

fn random_secret() -> Secret {
    Secret::new(Alphanumeric.sample_string(&mut rand::rng(), 32))
}

impl Stack {
    /// Start Kamailio, Janus and the token endpoint on fresh ports. Refuses outside the test namespace.
    pub async fn start(opts: StackOptions) -> Result<Self, HarnessError> {
        let iface = netns::check()?;
        let n = STACK_COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "callbox-stack-{}-{n}-{}",
            std::process::id(),
            Alphanumeric.sample_string(&mut rand::rng(), 6)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let mut guard = DirGuard { dir: Some(dir.clone()) };

        crate::init_logging();
        let secrets =
            Secrets { jwt_secret: random_secret(), janus_secret: random_secret(), sip_secret: random_secret() };
        let room_admin_key = random_secret();
        for secret in [&secrets.jwt_secret, &secrets.janus_secret, &secrets.sip_secret, &room_admin_key] {
            crate::log_capture::note_secret(secret.expose());
        }
        // One block: +0 Kamailio (udp+tcp), +1 Janus WebSocket, +2 trunk SIP (+3 its TLS), +7 trunk ctrl_tcp.
        let base = ports::reserve_block(8)?;
        let (kamailio_port, janus_port, trunk_port) = (base, base + 1, base + 2);
        let rtp = ports::media_range();
        let sip_rtp = ports::media_range();

        let kam_settings = kamailio_settings(&dir, &opts, kamailio_port, trunk_port, &secrets);
        let ice_ifaces =
            std::iter::once(iface.clone()).chain(opts.extra_ice_interfaces.iter().cloned()).collect::<Vec<_>>();
        let ice_ifaces = ice_ifaces.join(",");
        let janus_settings = janus::JanusSettings {
            dir: &dir,
            ws_port: janus_port,
            token_secret: secrets.janus_secret.expose(),
            room_admin_key: room_admin_key.expose(),
            ice_iface: &ice_ifaces,
            rtp_range: rtp,
            sip_rtp_range: sip_rtp,
            log_limit: opts.log_limit,
        };
        let (kam, jan) = tokio::join!(
            kamailio::start(&kam_settings, opts.start_timeout),
            janus::start(&janus_settings, opts.start_timeout)
        );
        let kamailio = Arc::new(kam?);
        let janus = Arc::new(jan?);

        let mut cfg =
            ServiceConfig::new(secrets.clone(), opts.domain.clone(), format!("sip:127.0.0.1:{kamailio_port}"));
        cfg.ttl_secs = opts.token_ttl.as_secs().max(1);
        cfg.room_admin_key = Some(room_admin_key.clone());
        let token = TokenService::start(cfg, ([127, 0, 0, 1], 0).into()).await?;

        guard.dir = None;
        log::info!(
            "stack {} up: kamailio udp/tcp 127.0.0.1:{kamailio_port}, janus ws://127.0.0.1:{janus_port}, token {}",
            dir.display(),
            token.url()
        );
        Ok(Stack {
            keep_dir: opts.keep_dir,
            dir,
            opts,
            iface,
            janus_port,
            kamailio_port,
            trunk_port,
            secrets,
            room_admin_key,
            token,
            janus: Mutex::new(janus),
            kamailio: Mutex::new(kamailio),
            ice_ifaces,
            rtp,
            sip_rtp,
            peers: Mutex::new(Vec::new()),
            peer_count: AtomicU32::new(0),
        })
    }

    /// `ws://127.0.0.1:PORT` (subprotocol `janus-protocol`).
    /// Janus's WebSocket address (on 127.0.0.1).
    pub fn janus_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.janus_port))
    }

    /// The token endpoint's address (on 127.0.0.1); its path is `/v1/token`.
    pub fn token_addr(&self) -> SocketAddr {
        self.token.local_addr()
    }

    /// The UDP ports Janus's WebRTC legs use (its `rtp_port_range`): the appliances' media goes to and from these.
    pub fn janus_rtp_range(&self) -> (u16, u16) {
        self.rtp
    }

    pub fn janus_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.janus_port)
    }

    pub fn sip_domain(&self) -> &str {
        &self.opts.domain
    }

    /// Kamailio's UDP and TCP address.
    pub fn kamailio_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.kamailio_port).into()
    }

    /// `sip:127.0.0.1:PORT`, for `proxy` and `outbound_proxy`.
    pub fn sip_proxy_uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.kamailio_port)
    }

    /// Where Kamailio sends E.164 calls (the trunk baresip listens there).
    pub fn trunk_addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.trunk_port).into()
    }

    /// The veth interface Janus gathers ICE candidates on.
    pub fn ice_interface(&self) -> &str {
        &self.iface
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This stack's secrets (for forging tests).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Janus's videoroom admin key (what a room grant carries), for tests that create rooms themselves.
    pub fn room_admin_key(&self) -> &Secret {
        &self.room_admin_key
    }

    /// A user access token (JWT as the token endpoint serves it) for `user` with a room grant, valid for `ttl`.
    pub fn mint_token(&self, user: &str, ttl: Duration) -> String {
        self.token.mint_for(user, ttl, true)
    }

    /// A bare Janus signed token (sip + videoroom) valid for `ttl`.
    pub fn janus_token(&self, ttl: Duration) -> String {
        let plugins: Vec<String> = DEFAULT_PLUGINS.iter().map(|p| p.to_string()).collect();
        janus_signed_token(&self.secrets.janus_secret, now_unix() + ttl.as_secs(), &plugins)
    }

    /// A Janus session of the test's own on this stack (a token valid for ten minutes), as a client or a room's
    /// owner would have: for tests that drive the signaling directly or ask Janus what it holds.
    pub async fn janus_session(
        &self,
    ) -> Result<
        (callbox::signaling::JanusSession, tokio::sync::mpsc::Receiver<callbox::signaling::ConnectionEvent>),
        callbox::signaling::SignalingError,
    > {
        let token = Secret::new(self.janus_token(Duration::from_secs(600)));
        let config = callbox::signaling::JanusConfig::new(vec![self.janus_ws_url()], token);
        callbox::signaling::JanusSession::connect(config).await
    }

    /// Ephemeral SIP credentials of `user` valid for `ttl`.
    pub fn sip_credentials(&self, user: &str, ttl: Duration) -> SipCredentials {
        sip_ephemeral_credentials(&self.secrets.sip_secret, user, now_unix() + ttl.as_secs())
    }

    /// The Janus sip plugin `register` request for `user` at this stack: the firmware's own derivation
    /// (`callbox::signaling::registration`) from ephemeral credentials valid for `ttl`.
    pub fn janus_sip_registration(&self, user: &str, ttl: Duration) -> Result<SipRegister, HarnessError> {
        let creds = sip_ephemeral_credentials(&self.secrets.sip_secret, user, now_unix() + ttl.as_secs());
        let grant = SipGrant {
            uri: format!("sip:{user}@{}", self.opts.domain),
            username: creds.username,
            password: creds.password,
            realm: self.opts.domain.clone(),
            proxy: self.sip_proxy_uri(),
        };
        let ttl_secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).min(3600);
        registration(&grant, ttl_secs).map_err(|e| HarnessError::Registration(e.to_string()))
    }

    /// `http://127.0.0.1:PORT/v1/token` (same URL across stop/start).
    pub fn token_url(&self) -> String {
        self.token.url()
    }

    /// Map a device key to a user at the token endpoint, with a room grant (its tokens carry the videoroom admin
    /// key: it may start group calls).
    pub fn add_device(&self, device_key: &str, user: &str) {
        crate::log_capture::note_secret(device_key);
        self.token.add_device(Secret::new(device_key), Device::new(user).with_rooms());
    }

    /// Map a device key to a user at the token endpoint without a room grant: it joins rooms it is invited to but
    /// cannot create one.
    pub fn add_device_without_rooms(&self, device_key: &str, user: &str) {
        crate::log_capture::note_secret(device_key);
        self.token.add_device(Secret::new(device_key), Device::new(user));
    }

    /// Lifetime of the tokens the endpoint serves from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.token.set_ttl(ttl);
    }

    /// Take the token endpoint down (connections refused) — outage tests.
    pub async fn stop_token_service(&self) {
        self.token.stop().await;
    }

    /// Bring the token endpoint back on the same port.
    pub async fn start_token_service(&self) -> Result<(), HarnessError> {
        Ok(self.token.restart().await?)
    }

    /// Ok while Janus and Kamailio run with their logs within bounds.
    pub fn check_health(&self) -> Result<(), HarnessError> {
        self.janus().check()?;
        self.kamailio().check()?;
        for p in crate::baresip_lock(&self.peers).iter() {
            p.check()?;
        }
        Ok(())
    }

    /// Start a baresip peer on this stack (the trunk on the stack's trunk port; only one trunk per stack).
    pub async fn start_baresip(&self, opts: BaresipOptions) -> Result<Baresip, HarnessError> {
        self.check_health()?;
        let n = self.peer_count.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("baresip-{}-{n}", opts.name()));
        let (sip_port, ctrl_port) = match opts.role {
            BaresipRole::PstnTrunk { .. } => (self.trunk_port, self.trunk_port + 5),
            BaresipRole::RegisteredUser { .. } => {
                let base = ports::reserve_block(6)?;
                (base, base + 5)
            }
        };
        let auth = match &opts.role {
            BaresipRole::PstnTrunk { .. } => None,
            BaresipRole::RegisteredUser { user } => {
                let owner = opts.credentials_of.as_deref().unwrap_or(user);
                let c = self.sip_credentials(owner, opts.credential_ttl);
                let pass = if opts.forged_password {
                    // Same shape, wrong HMAC.
                    sip_ephemeral_credentials(&random_secret(), owner, 0).password.expose().to_string()
                } else {
                    c.password.expose().to_string()
                };
                Some((c.username, pass))
            }
        };
        let launch = Launch {
            dir,
            sip_port,
            ctrl_port,
            rtp_range: ports::media_range(),
            kamailio_port: self.kamailio_port,
            domain: &self.opts.domain,
            auth,
            log_limit: self.opts.log_limit,
            timeout: self.opts.start_timeout,
        };
        let (b, process) = Baresip::launch(&opts, launch).await?;
        crate::baresip_lock(&self.peers).push(process);
        Ok(b)
    }

    fn janus(&self) -> Arc<ServerProcess> {
        crate::baresip_lock(&self.janus).clone()
    }

    fn kamailio(&self) -> Arc<ServerProcess> {
        crate::baresip_lock(&self.kamailio).clone()
    }

    /// Kills Janus at once (SIGKILL: a crash, every session lost) and starts it again on the same port with the same
    /// configuration; returns once it answers.
    pub async fn restart_janus(&self) -> Result<(), HarnessError> {
        self.janus().finish(Instant::now());
        let settings = janus::JanusSettings {
            dir: &self.dir,
            ws_port: self.janus_port,
            token_secret: self.secrets.janus_secret.expose(),
            room_admin_key: self.room_admin_key.expose(),
            ice_iface: &self.ice_ifaces,
            rtp_range: self.rtp,
            sip_rtp_range: self.sip_rtp,
            log_limit: self.opts.log_limit,
        };
        let started = janus::start(&settings, self.opts.start_timeout).await?;
        *crate::baresip_lock(&self.janus) = Arc::new(started);
        Ok(())
    }

    /// Kills Kamailio at once (its registrations, kept in memory only, are lost) and starts it again on the same
    /// port with the same configuration; returns once it answers.
    pub async fn restart_kamailio(&self) -> Result<(), HarnessError> {
        self.restart_kamailio_with_auth_secret(self.secrets.sip_secret.expose()).await
    }

    /// As [`Stack::restart_kamailio`], with `auth_secret` as its `AUTH_SECRET`: another one than the token
    /// endpoint's makes it refuse (403) every credential the endpoint hands out, until restarted with the right one.
    pub async fn restart_kamailio_with_auth_secret(&self, auth_secret: &str) -> Result<(), HarnessError> {
        self.kamailio().finish(Instant::now());
        let mut settings = kamailio_settings(&self.dir, &self.opts, self.kamailio_port, self.trunk_port, &self.secrets);
        settings.secret = auth_secret;
        let started = kamailio::start(&settings, self.opts.start_timeout).await?;
        *crate::baresip_lock(&self.kamailio) = Arc::new(started);
        Ok(())
    }

    /// Kamailio's log (started anew by a restart).
    pub fn kamailio_log(&self) -> PathBuf {
        self.kamailio().log_path().to_path_buf()
    }

    /// The last lines of every server's log.
    pub fn logs_tail(&self, max_bytes_each: u64) -> String {
        let mut out = String::new();
        let peers = crate::baresip_lock(&self.peers).clone();
        for p in [&self.kamailio(), &self.janus()].into_iter().chain(peers.iter()) {
            out.push_str(&format!(
                "===== {} ({}) =====\n{}\n",
                p.name(),
                p.log_path().display(),
                p.log_tail(max_bytes_each)
            ));
        }
        out
    }

    /// Print the tail of every log to stderr (call it when a test fails).
    pub fn dump_logs(&self) {
        eprintln!("{}", self.logs_tail(8 * 1024));
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_logs();
        }
        let peers = std::mem::take(&mut *crate::baresip_lock(&self.peers));
        let servers = [self.janus(), self.kamailio()];
        let all: Vec<&Arc<ServerProcess>> = peers.iter().chain(servers.iter()).collect();
        for p in &all {
            p.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in &all {
            p.finish(deadline);
        }
        if self.keep_dir || panicking {
            eprintln!("callbox stack: kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Reports a half-built stack's dir (kept for its logs) when `start` fails.
struct DirGuard {
    dir: Option<PathBuf>,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            // Kept: the error names a log in it.
            eprintln!("callbox stack: start failed, kept {}", d.display());
        }
    }
}
