//! `TokenCredential`: where the client's user access token comes from. A static token; a refresh callback
//! (async) that fetches tokens from the trusted service; or an initial token plus that callback. Refreshes are
//! single-flight (concurrent callers share one), retried with backoff and jitter, and published to subscribers
//! so that the live connection swaps grants in place. The token never reaches a log line, `Debug` or an error.
//!
//! Lifetimes are judged on the server's clock: a token carrying `iat` (when the service issued it) is taken as
//! issued at the moment it arrives, and its age from then on is counted on the monotonic clock. A board without a
//! real-time clock that boots years early or late still takes its tokens and refreshes them on time; only a token
//! without `iat` falls back to the local clock.

use crate::calling::token::{AccessToken, RefreshPolicy, TokenError};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Mutex};

/// The future a refresh callback returns: a new JWT, or why it could not be had (the message must not contain
/// the token).
pub type RefreshFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
type Refresher = Arc<dyn Fn() -> RefreshFuture + Send + Sync>;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Clone)]
struct Held {
    token: AccessToken,
    /// The server's time when the token arrived: its `iat`, or the local clock for a token without one.
    server_unix_at_receipt: u64,
    /// When it arrived, on the monotonic clock.
    received_at: Instant,
    generation: u64,
}

impl Held {
    fn new(token: AccessToken, generation: u64) -> Held {
        let server_unix_at_receipt = token.claims().iat.unwrap_or_else(unix_now);
        Held { token, server_unix_at_receipt, received_at: Instant::now(), generation }
    }

    /// The server's time now, as far as the token tells.
    fn server_now(&self) -> u64 {
        self.server_unix_at_receipt.saturating_add(self.received_at.elapsed().as_secs())
    }

    fn is_expired(&self) -> bool {
        self.token.is_expired(self.server_now())
    }
}

/// Whether a token just received is still valid: on the server's clock (its `iat`), else on the local one.
fn check_fresh_on_arrival(token: &AccessToken) -> Result<(), TokenError> {
    token.check_fresh(token.claims().iat.unwrap_or_else(unix_now))
}

/// How long a token just received stays valid (for the log).
pub(crate) fn lifetime_on_arrival(token: &AccessToken) -> u64 {
    token.expires_at().saturating_sub(token.claims().iat.unwrap_or_else(unix_now))
}

struct Inner {
    refresher: Option<Refresher>,
    policy: RefreshPolicy,
    /// Held across a refresh: concurrent refreshers queue here and then share the result.
    state: Mutex<Option<Held>>,
    updates: watch::Sender<Option<AccessToken>>,
    attempts_per_refresh: u32,
    /// The generation of the held token, readable without waiting for a refresh under way.
    generation: AtomicU64,
}

/// A source of user access tokens. Cheap to clone; clones share the token and its refreshes.
#[derive(Clone)]
pub struct TokenCredential {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCredential").field("refreshes", &self.inner.refresher.is_some()).finish_non_exhaustive()
    }
}

impl TokenCredential {
    /// A fixed token. Fails if it is not a readable JWT; it is used until it expires.
    pub fn from_static(jwt: &str) -> Result<Self, TokenError> {
        let token = AccessToken::parse(jwt)?;
        Ok(Self::build(Some(token), None, RefreshPolicy::default()))
    }

    /// Tokens fetched by `refresh` whenever one is needed (first use, and before each expiry).
    pub fn with_refresher<F, Fut>(refresh: F, policy: RefreshPolicy) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Self::build(None, Some(Arc::new(move || Box::pin(refresh()) as RefreshFuture)), policy)
    }

    /// An initial token, then tokens from `refresh` before each expiry.
    pub fn with_initial<F, Fut>(jwt: &str, refresh: F, policy: RefreshPolicy) -> Result<Self, TokenError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let token = AccessToken::parse(jwt)?;
        Ok(Self::build(Some(token), Some(Arc::new(move || Box::pin(refresh()) as RefreshFuture)), policy))
    }

    fn build(initial: Option<AccessToken>, refresher: Option<Refresher>, policy: RefreshPolicy) -> Self {
        let held = initial.map(|token| Held::new(token, 1));
        let (updates, _) = watch::channel(held.as_ref().map(|h| h.token.clone()));
        let attempts_per_refresh = policy.retry.max_attempts.unwrap_or(4).max(1);
        let generation = AtomicU64::new(held.as_ref().map(|h| h.generation).unwrap_or(0));
        TokenCredential {
            inner: Arc::new(Inner {
                refresher,
                policy,
                state: Mutex::new(held),
                updates,
                attempts_per_refresh,
                generation,
            }),
        }
    }

    pub fn can_refresh(&self) -> bool {
        self.inner.refresher.is_some()
    }

    pub fn policy(&self) -> &RefreshPolicy {
        &self.inner.policy
    }

    /// Every new token, as it arrives (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<Option<AccessToken>> {
        self.inner.updates.subscribe()
    }

    /// A token that has not expired: the held one, or a fresh one from the refresher.
    pub async fn get(&self) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = self.inner.state.lock().await;
            match state.as_ref() {
                Some(h) if !h.is_expired() => return Ok(h.token.clone()),
                Some(h) => h.generation,
                None => 0,
            }
        };
        self.refresh_after_generation(seen).await
    }

    /// How long until the held token should be refreshed (zero when due; `None` without a token or refresher).
    pub async fn refresh_due_in(&self) -> Option<Duration> {
        self.inner.refresher.as_ref()?;
        let state = self.inner.state.lock().await;
        let h = state.as_ref()?;
        let after = self.inner.policy.refresh_after(h.server_unix_at_receipt, h.token.expires_at());
        Some(after.saturating_sub(h.received_at.elapsed()))
    }

    /// Fetches a new token now. Callers that arrive while a refresh is under way wait for it and share its result.
    pub async fn refresh(&self) -> Result<AccessToken, TokenError> {
        let seen = self.inner.generation.load(Ordering::Acquire);
        self.refresh_after_generation(seen).await
    }

    async fn refresh_after_generation(&self, seen: u64) -> Result<AccessToken, TokenError> {
        let mut state = self.inner.state.lock().await;
        if let Some(h) = state.as_ref().filter(|h| h.generation > seen) {
            // Someone refreshed while we waited for the lock.
            return Ok(h.token.clone());
        }
        let Some(refresher) = self.inner.refresher.clone() else {
            return Err(TokenError::NoRefresher);
        };
        let retry = self.inner.policy.retry;
        let mut last_error = String::new();
        for attempt in 0..self.inner.attempts_per_refresh {
            if attempt > 0 {
                let delay = retry.delay(attempt - 1, rand::random::<f64>()).unwrap_or(retry.max);
                log::warn!("token refresh failed ({last_error}); retry {attempt} in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
            match refresher().await {
                Ok(jwt) => match AccessToken::parse(&jwt).and_then(|t| check_fresh_on_arrival(&t).map(|()| t)) {
                    Ok(token) => {
                        let generation = state.as_ref().map(|h| h.generation).unwrap_or(0) + 1;
                        log::info!(
                            "token refreshed for {} (expires in {} s)",
                            token.user(),
                            lifetime_on_arrival(&token)
                        );
                        *state = Some(Held::new(token.clone(), generation));
                        self.inner.generation.store(generation, Ordering::Release);
                        self.inner.updates.send_replace(Some(token.clone()));
                        return Ok(token);
                    }
                    Err(e) => last_error = format!("the service returned an unusable token: {e}"),
                },
                Err(e) => last_error = e,
            }
        }
        log::error!("token refresh gave up after {} attempts: {last_error}", self.inner.attempts_per_refresh);
        Err(TokenError::RefreshFailed(last_error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calling::Backoff;
    use base64::Engine;
    use std::sync::atomic::AtomicU32;

    fn jwt(user: &str, exp: u64) -> String {
        jwt_of(&serde_json::json!({"sub": user, "exp": exp}))
    }

    fn jwt_of(claims: &serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.c2ln", b64(br#"{"alg":"HS256"}"#), b64(claims.to_string().as_bytes()))
    }

    /// A board whose clock is `skew` seconds off the server's (negative: behind) takes the server's 600 s tokens,
    /// holds them as valid, and is due to refresh them after 540 s (600 - the 60 s margin), as on a right clock.
    async fn tokens_on_a_clock_off_by(skew: i64) {
        let server_now = unix_now().saturating_add_signed(-skew);
        let token = move || jwt_of(&serde_json::json!({"sub": "gate", "iat": server_now, "exp": server_now + 600}));
        let c = TokenCredential::with_refresher(move || async move { Ok(token()) }, fast_policy(1));
        let got = c.get().await.expect("a token issued on the server's clock is taken");
        assert_eq!(got.user(), "gate");
        assert!(c.get().await.is_ok(), "and held as valid");
        let due = c.refresh_due_in().await.expect("a refresher");
        assert!((539..=540).contains(&due.as_secs()), "refresh due in {due:?}");
    }

    #[tokio::test]
    async fn a_clock_years_behind_refreshes_tokens_on_time() {
        // Booted without an RTC at an old date: on the local clock the token would last ten years.
        tokens_on_a_clock_off_by(-10 * 365 * 86_400).await;
    }

    #[tokio::test]
    async fn a_clock_years_ahead_still_takes_tokens() {
        // On the local clock every token would have expired long ago.
        tokens_on_a_clock_off_by(10 * 365 * 86_400).await;
    }

    #[tokio::test]
    async fn a_token_without_iat_is_judged_on_the_local_clock() {
        let expired = jwt("gate", unix_now() - 5);
        let c = TokenCredential::with_refresher(
            move || {
                let t = expired.clone();
                async move { Ok(t) }
            },
            fast_policy(1),
        );
        assert!(c.get().await.is_err(), "expired on the local clock, and nothing else to go by");
    }

    fn fast_policy(attempts: u32) -> RefreshPolicy {
        RefreshPolicy {
            retry: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
                max_attempts: Some(attempts),
            },
            ..RefreshPolicy::default()
        }
    }

    #[tokio::test]
    async fn static_token_is_served_until_it_expires() {
        let c = TokenCredential::from_static(&jwt("alice", unix_now() + 600)).unwrap();
        assert_eq!(c.get().await.unwrap().user(), "alice");
        assert!(!c.can_refresh());
        let expired = TokenCredential::from_static(&jwt("alice", 10)).unwrap();
        assert_eq!(expired.get().await.unwrap_err(), TokenError::NoRefresher);
        assert!(TokenCredential::from_static("not-a-jwt").is_err());
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let calls = Arc::new(AtomicU32::new(0));
        let c2 = calls.clone();
        let cred = TokenCredential::with_refresher(
            move || {
                let calls = c2.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(jwt("bob", unix_now() + 600))
                }
            },
            fast_policy(3),
        );
        let (a, b, c) = tokio::join!(cred.get(), cred.get(), cred.refresh());
        assert_eq!(a.unwrap().user(), "bob");
        assert_eq!(b.unwrap().user(), "bob");
        assert_eq!(c.unwrap().user(), "bob");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A held fresh token needs no refresh.
        cred.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_refresh_is_retried_with_backoff_then_succeeds() {
        let calls = Arc::new(AtomicU32::new(0));
        let c2 = calls.clone();
        let cred = TokenCredential::with_refresher(
            move || {
                let n = c2.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err("token endpoint unreachable".to_string())
                    } else {
                        Ok(jwt("bob", unix_now() + 600))
                    }
                }
            },
            fast_policy(5),
        );
        assert_eq!(cred.get().await.unwrap().user(), "bob");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refresh_gives_up_with_a_clear_error_that_hides_the_token() {
        let cred = TokenCredential::with_refresher(|| async { Ok(jwt("bob", 5)) }, fast_policy(2));
        let err = cred.get().await.unwrap_err();
        let TokenError::RefreshFailed(msg) = &err else { panic!("{err:?}") };
        assert!(msg.contains("expired"), "{msg}");
        assert!(!err.to_string().contains(&jwt("bob", 5)));
    }

    #[tokio::test]
    async fn an_unusable_token_is_refused_by_claim_name_without_its_values() {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let with_claims = |claims: serde_json::Value| {
            format!("{}.{}.c2ln", b64(br#"{"alg":"HS256"}"#), b64(claims.to_string().as_bytes()))
        };
        let far = unix_now() + 600;
        for (claims, named, value) in [
            (serde_json::json!({"sub": {"n": "user-value-6104"}, "exp": far}), "sub", "user-value-6104"),
            (serde_json::json!({"sub": "bob", "exp": "exp-value-2290"}), "exp", "exp-value-2290"),
            (
                serde_json::json!({"sub": "bob", "exp": far, "grants": {"sip": {"uri": "sip:bob@x", "username": 1,
                    "password": "pw", "realm": "realm-value-8830", "proxy": "sip:proxy-value-5521"}}}),
                "grants.sip.username",
                "value-",
            ),
        ] {
            let jwt = with_claims(claims);
            let (served, expected) = (jwt.clone(), jwt.clone());
            // A static token and a refreshed one say the same.
            let static_err = TokenCredential::from_static(&expected).unwrap_err();
            let cred = TokenCredential::with_refresher(
                move || {
                    let jwt = served.clone();
                    async move { Ok(jwt) }
                },
                fast_policy(1),
            );
            let refresh_err = cred.get().await.unwrap_err();
            for err in [static_err, refresh_err] {
                let (shown, debug) = (err.to_string(), format!("{err:?}"));
                assert!(shown.contains(named), "{named} not named: {shown}");
                assert!(!shown.contains(value) && !debug.contains(value), "a claim's value shown: {shown} / {debug}");
                assert!(!shown.contains(&jwt) && !debug.contains(&jwt));
            }
        }
        // An expired token says how long ago, not when.
        let err = TokenCredential::with_refresher(|| async { Ok(jwt("bob", 1_234_567)) }, fast_policy(1))
            .get()
            .await
            .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("1234567"), "{err}");
    }

    #[tokio::test]
    async fn new_tokens_are_published_to_subscribers() {
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        let cred = TokenCredential::with_initial(
            &jwt("carol", unix_now() + 600),
            move || {
                let k = n2.fetch_add(1, Ordering::SeqCst);
                async move { Ok(jwt("carol", unix_now() + 600 + u64::from(k) + 1)) }
            },
            fast_policy(1),
        )
        .unwrap();
        let mut rx = cred.subscribe();
        let first = rx.borrow_and_update().clone().unwrap();
        cred.refresh().await.unwrap();
        rx.changed().await.unwrap();
        let second = rx.borrow().clone().unwrap();
        assert!(second.expires_at() > first.expires_at());
        assert!(!format!("{cred:?}").contains("carol"));
    }

    #[tokio::test]
    async fn refresh_is_due_by_the_policy() {
        let policy = RefreshPolicy { margin: Duration::from_secs(60), ..fast_policy(1) };
        let cred =
            TokenCredential::with_initial(&jwt("d", unix_now() + 3600), || async { Err("x".into()) }, policy).unwrap();
        let due = cred.refresh_due_in().await.unwrap();
        assert!(due <= Duration::from_secs(3540) && due >= Duration::from_secs(3530), "{due:?}");
        assert_eq!(TokenCredential::from_static(&jwt("d", unix_now() + 5)).unwrap().refresh_due_in().await, None);
    }
}
