//! User access tokens: reading the JWT that the trusted service mints (claims and per-server grants, no signature
//! check: the firmware never holds the signing secret), and the pure refresh policy that decides when to refresh
//! and how long to wait after a failure. The asynchronous `TokenCredential` around it lives in the firmware crate.
//!
//! Errors never quote the token or a claim's value (a user name, an expiry, a grant's URL or credential): a bad
//! claim is named by its path (`grants.sip.uri`) with what is wrong with it. The claims are therefore read field
//! by field from the JSON, not through serde's derived errors, whose messages quote the values they refuse.

use crate::backoff::Backoff;
use crate::identifier::Identifier;
use crate::secret::Secret;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// Why a token could not be used. Never carries the token itself, nor the value of any of its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (expected three base64url parts separated by '.')")]
    NotAJwt,
    #[error("the token's claims are not a JSON object")]
    ClaimsNotAnObject,
    /// A claim is missing or unusable: `claim` is its path (`sub`, `grants.sip.uri`), `problem` what is wrong.
    #[error("the token's claim {claim} {problem}")]
    BadClaim { claim: &'static str, problem: &'static str },
    #[error("the token expired {0} s ago")]
    Expired(u64),
    #[error("the token has no {0} grant")]
    MissingGrant(&'static str),
    #[error("the token refresh failed: {0}")]
    RefreshFailed(String),
    #[error("no token refresh is configured and the static token has expired")]
    NoRefresher,
}

/// The Janus grant: the Janus signed token sent with every Janus API request, and the room grant.
#[derive(Clone, Debug, Deserialize)]
pub struct JanusGrant {
    pub token: Secret,
    /// The room grant: the videoroom `admin_key` that creating a room needs (none: this device cannot start a
    /// group call, only join the rooms it is invited to).
    #[serde(default)]
    pub room_admin_key: Option<Secret>,
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

/// The value of `key` in `object` (`None`: absent or null) as a `T`; an error names `claim` and says it is not
/// `expected`, never what it was.
fn take<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    key: &str,
    claim: &'static str,
    expected: &'static str,
) -> Result<Option<T>, TokenError> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            serde_json::from_value(value).map(Some).map_err(|_| TokenError::BadClaim { claim, problem: expected })
        }
    }
}

/// As [`take`], for a claim that must be there.
fn require<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    key: &str,
    claim: &'static str,
    expected: &'static str,
) -> Result<T, TokenError> {
    take(object, key, claim, expected)?.ok_or(TokenError::BadClaim { claim, problem: "is missing" })
}

const NOT_A_STRING: &str = "is not a string";
const NOT_AN_OBJECT: &str = "is not an object";
const NOT_SECONDS: &str = "is not a whole number of seconds since 1970";

impl Claims {
    /// The claims from the token's JSON payload. Unknown claims are ignored; a grant that is absent or null is
    /// no grant.
    pub fn from_json(value: Value) -> Result<Claims, TokenError> {
        let Value::Object(mut top) = value else { return Err(TokenError::ClaimsNotAnObject) };
        let sub = require(&mut top, "sub", "sub", NOT_A_STRING)?;
        let exp = require(&mut top, "exp", "exp", NOT_SECONDS)?;
        let iat = take(&mut top, "iat", "iat", NOT_SECONDS)?;
        let grants = match take::<Map<String, Value>>(&mut top, "grants", "grants", NOT_AN_OBJECT)? {
            Some(grants) => Grants::from_json(grants)?,
            None => Grants::default(),
        };
        Ok(Claims { sub, exp, iat, grants })
    }
}

impl Grants {
    fn from_json(mut grants: Map<String, Value>) -> Result<Grants, TokenError> {
        let janus = match take::<Map<String, Value>>(&mut grants, "janus", "grants.janus", NOT_AN_OBJECT)? {
            Some(mut g) => Some(JanusGrant {
                token: Secret::new(require::<String>(&mut g, "token", "grants.janus.token", NOT_A_STRING)?),
                room_admin_key: take::<String>(&mut g, "room_admin_key", "grants.janus.room_admin_key", NOT_A_STRING)?
                    .map(Secret::new),
            }),
            None => None,
        };
        let sip = match take::<Map<String, Value>>(&mut grants, "sip", "grants.sip", NOT_AN_OBJECT)? {
            Some(mut g) => Some(SipGrant {
                uri: require(&mut g, "uri", "grants.sip.uri", NOT_A_STRING)?,
                username: require(&mut g, "username", "grants.sip.username", NOT_A_STRING)?,
                password: Secret::new(require::<String>(&mut g, "password", "grants.sip.password", NOT_A_STRING)?),
                realm: require(&mut g, "realm", "grants.sip.realm", NOT_A_STRING)?,
                proxy: require(&mut g, "proxy", "grants.sip.proxy", NOT_A_STRING)?,
            }),
            None => None,
        };
        let turn = match take::<Map<String, Value>>(&mut grants, "turn", "grants.turn", NOT_AN_OBJECT)? {
            Some(mut g) => Some(TurnGrant {
                urls: take(&mut g, "urls", "grants.turn.urls", "is not a list of strings")?.unwrap_or_default(),
                username: take(&mut g, "username", "grants.turn.username", NOT_A_STRING)?.unwrap_or_default(),
                credential: Secret::new(
                    take::<String>(&mut g, "credential", "grants.turn.credential", NOT_A_STRING)?.unwrap_or_default(),
                ),
            }),
            None => None,
        };
        Ok(Grants { janus, sip, turn })
    }
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
        // serde_json's messages for a syntax error give positions only; still, nothing of them is kept.
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::ClaimsNotAnObject)?;
        let claims = Claims::from_json(value)?;
        Ok(AccessToken { raw: Secret::new(jwt.trim()), claims })
    }

    /// The token's user (`sub`) as an identifier; an error names the claim, not its value.
    pub fn user_id(&self) -> Result<Identifier, TokenError> {
        Identifier::user(&self.claims.sub)
            .map_err(|_| TokenError::BadClaim { claim: "sub", problem: "is not a valid user id" })
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
        assert!(t.janus().unwrap().room_admin_key.is_none(), "no room grant");
        assert!(t.claims().grants.turn.is_none());
        let mut claims = full_claims(2_000);
        claims["grants"]["janus"]["room_admin_key"] = serde_json::json!("room-key-secret");
        let t = AccessToken::parse(&jwt(&claims)).unwrap();
        assert_eq!(t.janus().unwrap().room_admin_key.as_ref().unwrap().expose(), "room-key-secret");
        assert!(!format!("{t:?}").contains("room-key-secret"));
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
        assert_eq!(err, TokenError::BadClaim { claim: "exp", problem: "is missing" });
        let t = AccessToken::parse(&jwt(&serde_json::json!({"sub":"a","exp":5}))).unwrap();
        assert_eq!(t.sip().unwrap_err(), TokenError::MissingGrant("sip"));
    }

    /// The error of a token with these claims: it names `claim` and shows nothing of `value`.
    fn refused_without_its_value(claims: serde_json::Value, claim: &str, value: &str) -> TokenError {
        let err = AccessToken::parse(&jwt(&claims)).unwrap_err();
        let (shown, debug) = (err.to_string(), format!("{err:?}"));
        assert!(shown.contains(claim), "{claim} not named: {shown}");
        assert!(!shown.contains(value) && !debug.contains(value), "{value} quoted: {shown} / {debug}");
        err
    }

    #[test]
    fn claim_errors_name_the_claim_and_never_quote_its_value() {
        let full = |patch: &dyn Fn(&mut serde_json::Value)| {
            let mut c = full_claims(2_000);
            patch(&mut c);
            c
        };
        let cases: Vec<(serde_json::Value, &str, &str)> = vec![
            (serde_json::json!({"sub": ["sub-value-5531"], "exp": 9}), "sub", "sub-value-5531"),
            (serde_json::json!({"sub": "a", "exp": "exp-value-7391"}), "exp", "exp-value-7391"),
            (serde_json::json!({"sub": "a", "exp": -17_000_000_019_i64}), "exp", "17000000019"),
            (serde_json::json!({"sub": "a", "exp": 9, "iat": "iat-value-2207"}), "iat", "iat-value-2207"),
            (serde_json::json!({"sub": "a", "exp": 9, "grants": "grants-value-8812"}), "grants", "grants-value-8812"),
            (
                full(&|c| c["grants"]["sip"]["uri"] = serde_json::json!({"u": "sip:uri-value-4410@x"})),
                "grants.sip.uri",
                "uri-value-4410",
            ),
            (
                full(&|c| c["grants"]["sip"]["realm"] = serde_json::json!(["realm-value-6620"])),
                "grants.sip.realm",
                "realm-value-6620",
            ),
            (
                full(&|c| c["grants"]["sip"]["password"] = serde_json::json!(["pw-value-1187"])),
                "grants.sip.password",
                "pw-value-1187",
            ),
            (
                full(&|c| c["grants"]["janus"] = serde_json::json!("janus-value-3092")),
                "grants.janus",
                "janus-value-3092",
            ),
            (full(&|c| c["grants"]["janus"]["token"] = serde_json::json!(3_092_555)), "grants.janus.token", "3092555"),
            (
                full(&|c| c["grants"]["janus"]["room_admin_key"] = serde_json::json!(["room-key-value-5150"])),
                "grants.janus.room_admin_key",
                "room-key-value-5150",
            ),
            (
                full(&|c| c["grants"]["turn"] = serde_json::json!({"urls": "turn:turn-value-9901"})),
                "grants.turn.urls",
                "turn-value-9901",
            ),
        ];
        for (claims, claim, value) in cases {
            let err = refused_without_its_value(claims, claim, value);
            assert!(matches!(err, TokenError::BadClaim { .. }), "{err:?}");
        }
        let missing = full(&|c| {
            c["grants"]["sip"].as_object_mut().unwrap().remove("proxy");
        });
        let err = refused_without_its_value(missing, "grants.sip.proxy", "pw-secret");
        assert_eq!(err.to_string(), "the token's claim grants.sip.proxy is missing");
        // Not JSON, or not an object: nothing of the payload is shown.
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        for payload in [&b"{\"sub\": \"payload-value-1\""[..], b"[\"payload-value-1\"]", b"\"payload-value-1\""] {
            let err = AccessToken::parse(&format!("e30.{}.c2ln", b64(payload))).unwrap_err();
            assert_eq!(err, TokenError::ClaimsNotAnObject);
            assert!(!format!("{err} {err:?}").contains("payload-value-1"));
        }
        // Absent or null grants are no grants; unknown claims are ignored.
        let t =
            AccessToken::parse(&jwt(&serde_json::json!({"sub":"a","exp":9,"grants":{"sip":null},"x":[1]}))).unwrap();
        assert!(t.sip().is_err() && t.claims().iat.is_none());
    }

    #[test]
    fn a_sub_that_is_no_user_id_is_refused_without_being_quoted() {
        let t = AccessToken::parse(&jwt(&serde_json::json!({"sub": "bad user/sub-value-4242", "exp": 9}))).unwrap();
        let err = t.user_id().unwrap_err();
        assert_eq!(err, TokenError::BadClaim { claim: "sub", problem: "is not a valid user id" });
        assert!(!format!("{err} {err:?}").contains("sub-value-4242"));
        let t = AccessToken::parse(&jwt(&serde_json::json!({"sub": "alice", "exp": 9}))).unwrap();
        assert_eq!(t.user_id().unwrap().as_str(), "alice");
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
