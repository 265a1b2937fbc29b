//! The service configuration: secrets, device keys → users (and their room grants), token lifetime, SIP realm and
//! proxy, the videoroom admin key; loaded from a JSON file for the binary, built in code by the tests.

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

/// What a device key stands for: its user, and whether it may create videoroom rooms (start group calls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub user: String,
    /// The room grant: the device's tokens carry the videoroom admin key (`grants.janus.room_admin_key`).
    pub rooms: bool,
}

impl Device {
    /// A device of `user` without a room grant.
    pub fn new(user: impl Into<String>) -> Self {
        Device { user: user.into(), rooms: false }
    }

    /// The same device with a room grant.
    pub fn with_rooms(self) -> Self {
        Device { rooms: true, ..self }
    }
}

impl From<&str> for Device {
    fn from(user: &str) -> Self {
        Device::new(user)
    }
}

/// Everything the service needs to mint and serve tokens.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub secrets: Secrets,
    /// Device key → device (user id, room grant).
    pub devices: Vec<(Secret, Device)>,
    pub ttl_secs: u64,
    pub realm: String,
    pub sip_proxy: String,
    pub plugins: Vec<String>,
    /// Janus's videoroom `admin_key`, given to the devices with a room grant (none: nobody gets one).
    pub room_admin_key: Option<Secret>,
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
            room_admin_key: None,
        }
    }

    /// The device a key maps to (constant-time comparison of each key).
    pub fn device_for(&self, device_key: &str) -> Option<&Device> {
        let mut found = None;
        for (key, device) in &self.devices {
            if key.ct_eq(device_key) && found.is_none() {
                found = Some(device);
            }
        }
        found
    }

    /// The user a device key maps to.
    pub fn user_for(&self, device_key: &str) -> Option<&str> {
        self.device_for(device_key).map(|d| d.user.as_str())
    }

    /// The videoroom admin key a device's tokens carry: the service's, for a device with a room grant.
    pub fn room_admin_key_for(&self, device: &Device) -> Option<Secret> {
        self.room_admin_key.clone().filter(|_| device.rooms)
    }

    /// Load from a JSON file:
    /// `{"jwt_secret":..,"janus_secret":..,"sip_secret":..,"ttl_secs":600,"realm":"callbox.test",
    ///   "sip_proxy":"sip:127.0.0.1:5060","room_admin_key":..,
    ///   "devices":{"<device key>":"alice","<device key>":{"user":"bob","rooms":true}}}` (`plugins` optional;
    /// `room_admin_key`, Janus's videoroom `admin_key`, required once a device has `"rooms": true`).
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
            devices: std::collections::BTreeMap<String, RawDevice>,
            #[serde(default)]
            plugins: Option<Vec<String>>,
            #[serde(default)]
            room_admin_key: Option<String>,
        }
        /// `"alice"` (no room grant) or `{"user": "alice", "rooms": true}`.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum RawDevice {
            User(String),
            Granted {
                user: String,
                #[serde(default)]
                rooms: bool,
            },
        }
        fn default_ttl() -> u64 {
            600
        }
        // serde_json's messages name the line and column, not the value.
        let raw: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        // No default and no toy secret: whoever installs the service generates them (e.g. 32 random bytes, base64).
        for (name, secret) in [
            ("jwt_secret", Some(&raw.jwt_secret)),
            ("janus_secret", Some(&raw.janus_secret)),
            ("sip_secret", Some(&raw.sip_secret)),
            ("room_admin_key", raw.room_admin_key.as_ref()),
        ] {
            if secret.is_some_and(|s| s.len() < MIN_SECRET_LEN) {
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
        cfg.devices = raw
            .devices
            .into_iter()
            .map(|(k, d)| {
                let device = match d {
                    RawDevice::User(user) => Device::new(user),
                    RawDevice::Granted { user, rooms } => Device { user, rooms },
                };
                (Secret::new(k), device)
            })
            .collect();
        // A room grant without the key to give would be a silent no: say so (without naming the device's key).
        let granted = cfg.devices.iter().filter(|(_, d)| d.rooms).count();
        if granted > 0 && raw.room_admin_key.is_none() {
            return Err(format!("{granted} device(s) have a room grant but room_admin_key is not set"));
        }
        cfg.room_admin_key = raw.room_admin_key.map(Secret::new);
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

    #[test]
    fn room_grants_per_device() {
        let json = |devices: &str, key: &str| {
            format!(
                r#"{{"jwt_secret":"aaaaaaaaaaaaaaaa","janus_secret":"bbbbbbbbbbbbbbbb","sip_secret":"cccccccccccccccc",
                    "realm":"callbox.test","sip_proxy":"sip:127.0.0.1:5060"{key},"devices":{devices}}}"#
            )
        };
        let key = r#","room_admin_key":"room-admin-key-7731""#;
        let devices = r#"{"k1":"alice","k2":{"user":"bob","rooms":true},"k3":{"user":"carol"}}"#;
        let cfg = ServiceConfig::parse(&json(devices, key)).unwrap();
        assert_eq!(cfg.device_for("k1"), Some(&Device::new("alice")));
        assert_eq!(cfg.device_for("k2"), Some(&Device::new("bob").with_rooms()));
        assert_eq!(cfg.device_for("k3"), Some(&Device::new("carol")));
        let bob = cfg.device_for("k2").unwrap();
        assert_eq!(cfg.room_admin_key_for(bob).unwrap().expose(), "room-admin-key-7731");
        assert!(cfg.room_admin_key_for(cfg.device_for("k1").unwrap()).is_none());
        // The key never shows in Debug.
        assert!(!format!("{cfg:?}").contains("room-admin-key-7731"));
        // A grant needs the key; a short key is refused; neither error quotes a key.
        let e = ServiceConfig::parse(&json(devices, "")).unwrap_err();
        assert_eq!(e, "1 device(s) have a room grant but room_admin_key is not set");
        let e = ServiceConfig::parse(&json(devices, r#","room_admin_key":"short-7731""#)).unwrap_err();
        assert_eq!(e, "room_admin_key must be at least 16 characters long");
        // No grant, no key needed.
        assert!(ServiceConfig::parse(&json(r#"{"k1":"alice"}"#, "")).unwrap().room_admin_key.is_none());
    }
}
