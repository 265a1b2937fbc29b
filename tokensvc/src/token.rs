//! Token minting: the JWT (HS256) with its grants, the Janus signed token (`janus_auth_check_signature` format)
//! with the videoroom admin key for a device with a room grant, and the Kamailio `auth_ephemeral` credentials
//! (`username_format = 1`, HMAC-SHA1).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use callbox_calling::Secret;
use hmac::{Hmac, Mac};
use serde_json::json;

/// The Janus plugins a token grants by default.
pub const DEFAULT_PLUGINS: [&str; 2] = ["janus.plugin.sip", "janus.plugin.videoroom"];

/// The three secrets of the service: JWT signing, Janus `token_auth_secret`, Kamailio `auth_ephemeral` secret.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub jwt_secret: Secret,
    pub janus_secret: Secret,
    pub sip_secret: Secret,
}

/// What to mint a token for.
#[derive(Clone, Debug)]
pub struct MintParams {
    /// The user id (`alice`): JWT `sub` and the SIP user part.
    pub user: String,
    pub ttl_secs: u64,
    /// SIP domain and digest realm (`callbox.test`).
    pub realm: String,
    /// SIP proxy URI (`sip:127.0.0.1:5060`).
    pub sip_proxy: String,
    /// Janus plugins granted (`janus.plugin.sip`, ...).
    pub plugins: Vec<String>,
    /// The room grant: Janus's videoroom `admin_key`, which `create` needs (`grants.janus.room_admin_key`).
    pub room_admin_key: Option<Secret>,
}

impl MintParams {
    /// Parameters with the default plugins.
    pub fn new(user: impl Into<String>, ttl_secs: u64, realm: impl Into<String>, sip_proxy: impl Into<String>) -> Self {
        MintParams {
            user: user.into(),
            ttl_secs,
            realm: realm.into(),
            sip_proxy: sip_proxy.into(),
            plugins: DEFAULT_PLUGINS.iter().map(|p| p.to_string()).collect(),
            room_admin_key: None,
        }
    }
}

/// Ephemeral SIP credentials for Kamailio's `auth_ephemeral` (`username_format = 1`).
#[derive(Clone, Debug)]
pub struct SipCredentials {
    /// `<expiry>:<user>`.
    pub username: String,
    /// `base64(HMAC-SHA1(sip_secret, username))`.
    pub password: Secret,
}

/// An HMAC keyed with `key`. HMAC takes keys of any length, so `new_from_slice` does not fail; the fallback
/// (an all-zero key) exists only to keep this path free of panics.
fn keyed<M: Mac + hmac::digest::KeyInit>(key: &Secret) -> M {
    <M as hmac::digest::KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| <M as hmac::digest::KeyInit>::new(&Default::default()))
}

fn hmac_sha1_b64(key: &Secret, data: &str) -> String {
    let mut mac: Hmac<sha1::Sha1> = keyed(key);
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A Janus signed token: `<expiry>,janus,<plugin>[,...]:base64(HMAC-SHA1(janus_secret, data))`.
pub fn janus_signed_token(janus_secret: &Secret, expiry_unix: u64, plugins: &[String]) -> String {
    let mut data = format!("{expiry_unix},janus");
    for p in plugins {
        data.push(',');
        data.push_str(p);
    }
    let sig = hmac_sha1_b64(janus_secret, &data);
    format!("{data}:{sig}")
}

/// Kamailio `auth_ephemeral` credentials valid until `expiry_unix`.
pub fn sip_ephemeral_credentials(sip_secret: &Secret, user: &str, expiry_unix: u64) -> SipCredentials {
    let username = format!("{expiry_unix}:{user}");
    let password = Secret::new(hmac_sha1_b64(sip_secret, &username));
    SipCredentials { username, password }
}

/// Mint a user access token (HS256 JWT) valid from `now_unix` for `params.ttl_secs`.
pub fn mint(secrets: &Secrets, params: &MintParams, now_unix: u64) -> String {
    let exp = now_unix.saturating_add(params.ttl_secs);
    let janus = janus_signed_token(&secrets.janus_secret, exp, &params.plugins);
    let sip = sip_ephemeral_credentials(&secrets.sip_secret, &params.user, exp);
    let mut janus = json!({ "token": janus });
    if let Some(key) = &params.room_admin_key {
        janus["room_admin_key"] = json!(key.expose());
    }
    let claims = json!({
        "sub": params.user,
        "iat": now_unix,
        "exp": exp,
        "grants": {
            "janus": janus,
            "sip": {
                "uri": format!("sip:{}@{}", params.user, params.realm),
                "username": sip.username,
                "password": sip.password.expose(),
                "realm": params.realm,
                "proxy": params.sip_proxy,
            },
            "turn": { "urls": [], "username": "", "credential": "" },
        }
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac: Hmac<sha2::Sha256> = keyed(&secrets.jwt_secret);
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            jwt_secret: Secret::new("jwt-secret"),
            janus_secret: Secret::new("janus"),
            sip_secret: Secret::new("kamailio_rules"),
        }
    }

    #[test]
    fn janus_token_matches_independent_hmac() {
        // Computed independently with:
        //   printf '1700000600,janus,janus.plugin.sip,janus.plugin.videoroom' \
        //     | openssl dgst -sha1 -hmac janus -binary | base64
        let t = janus_signed_token(
            &Secret::new("janus"),
            1_700_000_600,
            &["janus.plugin.sip".into(), "janus.plugin.videoroom".into()],
        );
        assert_eq!(
            t,
            format!("1700000600,janus,janus.plugin.sip,janus.plugin.videoroom:{}", "o5jplpmslCALQdKKsRZT1QQLR3E=")
        );
    }

    #[test]
    fn sip_password_matches_independent_hmac() {
        // printf '1700000600:alice' | openssl dgst -sha1 -hmac kamailio_rules -binary | base64
        let c = sip_ephemeral_credentials(&Secret::new("kamailio_rules"), "alice", 1_700_000_600);
        assert_eq!(c.username, "1700000600:alice");
        assert_eq!(c.password.expose(), "vTP/Y9+tImiqx06d9vhWO6xYqgI=");
    }

    #[test]
    fn jwt_structure_and_claims() {
        let params = MintParams::new("alice", 600, "callbox.test", "sip:127.0.0.1:5060");
        let jwt = mint(&secrets(), &params, 1_700_000_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "JWT");
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_000_600u64);
        let g = &claims["grants"];
        assert_eq!(g["janus"]["token"], janus_signed_token(&Secret::new("janus"), 1_700_000_600, &params.plugins));
        assert_eq!(g["sip"]["uri"], "sip:alice@callbox.test");
        assert_eq!(g["sip"]["username"], "1700000600:alice");
        assert_eq!(g["sip"]["password"], "vTP/Y9+tImiqx06d9vhWO6xYqgI=");
        assert_eq!(g["sip"]["realm"], "callbox.test");
        assert_eq!(g["sip"]["proxy"], "sip:127.0.0.1:5060");
        assert!(g["turn"]["urls"].as_array().unwrap().is_empty());
        // No room grant: no admin key.
        assert!(g["janus"].get("room_admin_key").is_none());
        // The signature is HMAC-SHA256 over header.payload with the JWT secret.
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"jwt-secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        // A different secret does not verify.
        let mut bad = Hmac::<sha2::Sha256>::new_from_slice(b"other").unwrap();
        bad.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(bad.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).is_err());
    }

    #[test]
    fn a_room_grant_carries_the_admin_key() {
        let mut params = MintParams::new("alice", 600, "callbox.test", "sip:127.0.0.1:5060");
        params.room_admin_key = Some(Secret::new("room-admin-key"));
        let jwt = mint(&secrets(), &params, 1_700_000_000);
        let payload = jwt.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["grants"]["janus"]["room_admin_key"], "room-admin-key");
        assert!(claims["grants"]["janus"]["token"].is_string());
        assert!(!format!("{params:?}").contains("room-admin-key"));
    }
}
