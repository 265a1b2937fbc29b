//! callbox-tokensvc: the reference token endpoint for development and tests. It mints callbox user access tokens
//! (HS256 JWTs carrying a Janus signed token, ephemeral SIP credentials and TURN credentials), serves them over a
//! minimal HTTP/1.1 endpoint (`POST /v1/token`), and offers a small plain-HTTP client to fetch them.
//! In production this role belongs to the vendor's trusted service.

pub mod client;
pub mod config;
pub mod lockout;
pub mod server;
pub mod token;

#[cfg(test)]
mod fuzz_tests;

pub use callbox_calling::Secret;
pub use client::{fetch_token, FetchError};
pub use config::{ConfigError, Device, ServiceConfig};
pub use lockout::LockoutPolicy;
pub use server::{Limits, ServerError, TokenService};
pub use token::{
    janus_signed_token, mint, sip_ephemeral_credentials, MintParams, Secrets, SipCredentials, DEFAULT_PLUGINS,
};
