//! The service configuration: secrets, device keys → users, token lifetime, SIP realm and proxy; loaded from a
//! JSON file for the binary, built in code by the tests.

use std::path::Path;

use callbox_calling::Secret;
use serde::Deserialize;

use crate::token::{Secrets, DEFAULT_PLUGINS};

/// Shortest secret the JSON form accepts.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read token service config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid token service config {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Everything the service needs to mint and serve tokens.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub secrets: Secrets,
    /// Device key → user id.
    pub devices: Vec<(Secret, String)>,
    pub ttl_secs: u64,
    pub realm: String,
    pub sip_proxy: String,
    pub plugins: Vec<String>,
}

impl ServiceConfig {
    /// A config with no devices, the default plugins and a 600 s TTL.
    pub fn new(secrets: Secrets, realm: impl Into<String>, sip_proxy: impl Into<String>) -> Self {
        ServiceConfig {
            secrets,
            devices: Vec::new(),
            ttl_secs: 600,
            realm: realm.into(),
            sip_proxy: sip_proxy.into(),
            plugins: DEFAULT_PLUGINS.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// The user a device key maps to (constant-time comparison of each key).
    pub fn user_for(&self, device_key: &str) -> Option<&str> {
        let mut found = None;
        for (key, user) in &self.devices {
            if key.ct_eq(device_key) && found.is_none() {
                found = Some(user.as_str());
            }
        }
        found
    }

    /// Load from a JSON file:
    /// `{"jwt_secret":..,"janus_secret":..,"sip_secret":..,"ttl_secs":600,"realm":"callbox.test",
    ///   "sip_proxy":"sip:127.0.0.1:5060","devices":{"<device key>":"alice"}}` (`plugins` optional).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid { path: path.display().to_string(), reason })
    }

    /// Parse the JSON form (see `load`). Every secret is required and at least `MIN_SECRET_LEN` long. Errors never
    /// quote the file's values.
    pub fn parse(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            jwt_secret: String,
            janus_secret: String,
            sip_secret: String,
            #[serde(default = "default_ttl")]
            ttl_secs: u64,
            realm: String,
            sip_proxy: String,
            #[serde(default)]
            devices: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            plugins: Option<Vec<String>>,
        }
        fn default_ttl() -> u64 {
            600
        }
        // serde_json's messages name the line and column, not the value.
        let raw: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        // No default and no toy secret: whoever installs the service generates them (e.g. 32 random bytes, base64).
        for (name, secret) in
            [("jwt_secret", &raw.jwt_secret), ("janus_secret", &raw.janus_secret), ("sip_secret", &raw.sip_secret)]
        {
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!("{name} must be at least {MIN_SECRET_LEN} characters long"));
            }
        }
        if raw.ttl_secs == 0 {
            return Err("ttl_secs must be positive".into());
        }
        let mut cfg = ServiceConfig::new(
            Secrets {
                jwt_secret: Secret::new(raw.jwt_secret),
                janus_secret: Secret::new(raw.janus_secret),
                sip_secret: Secret::new(raw.sip_secret),
            },
            raw.realm,
            raw.sip_proxy,
        );
        cfg.ttl_secs = raw.ttl_secs;
        cfg.devices = raw.devices.into_iter().map(|(k, u)| (Secret::new(k), u)).collect();
        if let Some(p) = raw.plugins {
            cfg.plugins = p;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_maps_devices() {
        let json = |jwt: &str| {
            format!(
                r#"{{"jwt_secret":"{jwt}","janus_secret":"bbbbbbbbbbbbbbbb","sip_secret":"cccccccccccccccc",
                    "ttl_secs":30,"realm":"callbox.test","sip_proxy":"sip:127.0.0.1:5060","devices":{{"k1":"alice"}}}}"#
            )
        };
        let cfg = ServiceConfig::parse(&json("aaaaaaaaaaaaaaaa")).unwrap();
        assert_eq!(cfg.ttl_secs, 30);
        assert_eq!(cfg.user_for("k1"), Some("alice"));
        assert_eq!(cfg.user_for("k2"), None);
        assert!(ServiceConfig::parse(r#"{"jwt_secret":""}"#).is_err());
        // Missing, empty or short secrets are refused, and the error does not quote them.
        let e = ServiceConfig::parse(&json("short-secret")).unwrap_err();
        assert_eq!(e, "jwt_secret must be at least 16 characters long");
        assert!(ServiceConfig::parse(&json("")).is_err());
        let no_sip = json("aaaaaaaaaaaaaaaa").replace(r#""sip_secret":"cccccccccccccccc","#, "");
        assert!(ServiceConfig::parse(&no_sip).unwrap_err().contains("sip_secret"));
    }
}
