//! Provisioned credentials: the device's long-lived credential (from systemd's `$CREDENTIALS_DIRECTORY` or a file
//! only the service user can read), a static access token for simple deployments, and the HTTPS client that
//! trades the device credential for user access tokens at the trusted service's token endpoint.

pub mod https;
pub mod source;

pub use https::{tls_client_config, token_credential, EndpointConfig, Timeouts, TokenClientError, TokenEndpoint};
pub use source::{
    read_secret_file, static_token, static_token_from, systemd_credential, systemd_credential_in, CredentialError,
    CredentialSource,
};
