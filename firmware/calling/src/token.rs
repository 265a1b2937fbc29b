//! User access tokens: reading the JWT that the trusted service mints (claims and per-server grants, no signature
//! check: the firmware never holds the signing secret), and the pure refresh policy that decides when to refresh
//! and how long to wait after a failure. The asynchronous `TokenCredential` around it lives in the firmware crate.

use crate::backoff::Backoff;
use crate::secret::Secret;
use base64::Engine;
use serde::Deserialize;
use std::time::Duration;

/// Why a token could not be used. Never carries the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (expected three base64url parts separated by '.')")]
    NotAJwt,
    #[error("the token's claims could not be read: {0}")]
    BadClaims(String),
    #[error("the token expired {0} s ago")]
    Expired(u64),
    #[error("the token has no {0} grant")]
    MissingGrant(&'static str),
    #[error("the token refresh failed: {0}")]
    RefreshFailed(String),
    #[error("no token refresh is configured and the static token has expired")]
    NoRefresher,
}

/// The Janus grant: the Janus signed token sent with every Janus API request.
#[derive(Clone, Debug, Deserialize)]
pub struct JanusGrant {
    pub token: Secret,
}

/// The SIP grant: ephemeral credentials for the registrar (`username` is `<expiry>:<user>`).
#[derive(Clone, Debug, Deserialize)]
pub struct SipGrant {
    pub uri: String,
    pub username: String,
    pub password: Secret,
    pub realm: String,
    pub proxy: String,
}

/// TURN credentials, when the deployment has a TURN server.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct TurnGrant {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: Secret,
}

#[derive(Clone, Debug, Deserialize, Default)]
pub struct Grants {
    pub janus: Option<JanusGrant>,
    pub sip: Option<SipGrant>,
    pub turn: Option<TurnGrant>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub grants: Grants,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// A parsed user access token: the raw JWT (secret) and its claims.
#[derive(Clone, Debug)]
pub struct AccessToken {
    raw: Secret,
    claims: Claims,
}

impl AccessToken {
    /// Reads a JWT's claims. The signature is not checked here: the servers check the grants.
    pub fn parse(jwt: &str) -> Result<Self, TokenError> {
        let mut parts = jwt.trim().split('.');
        let (Some(_header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotAJwt);
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| TokenError::NotAJwt)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|e| TokenError::BadClaims(e.to_string()))?;
        Ok(AccessToken { raw: Secret::new(jwt.trim()), claims })
    }

    pub fn raw(&self) -> &Secret {
        &self.raw
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn user(&self) -> &str {
        &self.claims.sub
    }

    /// Expiry, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.claims.exp
    }

    pub fn is_expired(&self, now_unix: u64) -> bool {
        now_unix >= self.claims.exp
    }

    /// Fails when the token has expired at `now_unix`.
    pub fn check_fresh(&self, now_unix: u64) -> Result<(), TokenError> {
        if self.is_expired(now_unix) {
            Err(TokenError::Expired(now_unix - self.claims.exp))
        } else {
            Ok(())
        }
    }

    pub fn janus(&self) -> Result<&JanusGrant, TokenError> {
        self.claims.grants.janus.as_ref().ok_or(TokenError::MissingGrant("janus"))
    }

    pub fn sip(&self) -> Result<&SipGrant, TokenError> {
        self.claims.grants.sip.as_ref().ok_or(TokenError::MissingGrant("sip"))
    }
}

/// When to refresh a token, and how to retry a failed refresh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry...
    pub margin: Duration,
    /// ...but not before this fraction of the token's lifetime has passed, so that a margin longer than a
    /// short-lived token's lifetime does not make the client refresh continuously.
    pub min_lifetime_fraction: f64,
    pub retry: Backoff,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            margin: Duration::from_secs(60),
            min_lifetime_fraction: 0.5,
            retry: Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30), max_attempts: None },
        }
    }
}

impl RefreshPolicy {
    /// How long after `received_unix` (when the token was obtained) to refresh a token expiring at `exp_unix`:
    /// the later of (expiry - margin) and (fraction x lifetime). Zero when already expired.
    pub fn refresh_after(&self, received_unix: u64, exp_unix: u64) -> Duration {
        let lifetime = Duration::from_secs(exp_unix.saturating_sub(received_unix));
        let by_margin = lifetime.saturating_sub(self.margin);
        let by_fraction = lifetime.mul_f64(self.min_lifetime_fraction.clamp(0.0, 1.0));
        by_margin.max(by_fraction)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JWT with the given claims (unsigned: the signature part is a placeholder).
    pub fn jwt(claims: &serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.c2ln", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
    }

    fn full_claims(exp: u64) -> serde_json::Value {
        serde_json::json!({"sub":"alice","exp":exp,"iat":exp-600,"grants":{
            "janus":{"token":"123,janus,janus.plugin.sip:abc="},
            "sip":{"uri":"sip:alice@callbox.test","username":"123:alice","password":"pw-secret","realm":"callbox.test","proxy":"sip:127.0.0.1:5060"}}})
    }

    #[test]
    fn parses_claims_and_grants() {
        let t = AccessToken::parse(&jwt(&full_claims(2_000))).unwrap();
        assert_eq!(t.user(), "alice");
        assert_eq!(t.expires_at(), 2_000);
        assert_eq!(t.sip().unwrap().username, "123:alice");
        assert_eq!(t.janus().unwrap().token.expose(), "123,janus,janus.plugin.sip:abc=");
        assert!(t.claims().grants.turn.is_none());
    }

    #[test]
    fn expiry_is_checked() {
        let t = AccessToken::parse(&jwt(&full_claims(2_000))).unwrap();
        assert!(t.check_fresh(1_999).is_ok());
        assert_eq!(t.check_fresh(2_010), Err(TokenError::Expired(10)));
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        assert_eq!(AccessToken::parse("abc").unwrap_err(), TokenError::NotAJwt);
        assert_eq!(AccessToken::parse("a.b.c.d").unwrap_err(), TokenError::NotAJwt);
        assert_eq!(AccessToken::parse("a.!!!.c").unwrap_err(), TokenError::NotAJwt);
        let no_exp = jwt(&serde_json::json!({"sub":"x-secret-sub"}));
        let err = AccessToken::parse(&no_exp).unwrap_err();
        assert!(matches!(err, TokenError::BadClaims(_)));
        let t = AccessToken::parse(&jwt(&serde_json::json!({"sub":"a","exp":5}))).unwrap();
        assert_eq!(t.sip().unwrap_err(), TokenError::MissingGrant("sip"));
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let raw = jwt(&full_claims(2_000));
        let t = AccessToken::parse(&raw).unwrap();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&raw));
        assert!(!dbg.contains("pw-secret"));
        assert!(!dbg.contains("abc="));
    }

    #[test]
    fn refresh_time_uses_margin_but_never_before_the_fraction() {
        let p = RefreshPolicy { margin: Duration::from_secs(60), ..RefreshPolicy::default() };
        // One hour token: 60 s before expiry.
        assert_eq!(p.refresh_after(0, 3_600), Duration::from_secs(3_540));
        // 15 s token: half its lifetime (the margin would make it due at once).
        assert_eq!(p.refresh_after(100, 115), Duration::from_millis(7_500));
        // 15 s token with a 5 s margin: 5 s before expiry.
        let p5 = RefreshPolicy { margin: Duration::from_secs(5), ..p };
        assert_eq!(p5.refresh_after(100, 115), Duration::from_secs(10));
        // Already expired: due now.
        assert_eq!(p.refresh_after(200, 100), Duration::ZERO);
    }
}
