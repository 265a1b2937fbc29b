//! Provisioning: the secrets installed on the device and what they are traded for. The device's long-lived
//! credential (from systemd's `$CREDENTIALS_DIRECTORY` or a file only the service user can read), a static access
//! token for simple deployments, and the HTTPS client that trades the device credential for user access tokens at
//! the trusted service's token endpoint. (The access token itself is `calling::token`; the refreshing holder of
//! it is `client::TokenCredential`.)

pub mod https;
pub mod source;

pub use https::{tls_client_config, token_credential, EndpointConfig, Timeouts, TokenClientError, TokenEndpoint};
pub use source::{
    read_secret_file, static_token, static_token_from, systemd_credential, systemd_credential_in, CredentialError,
    CredentialSource,
};
