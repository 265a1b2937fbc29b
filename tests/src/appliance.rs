//! Appliances for the integration tests, the demo and the benchmark: callbox clients provisioned at a stack's token
//! endpoint with a device key, as a deployed device is; and the `main` that the harness's programs share.

use crate::stack::Stack;
use callbox::calling::{RefreshPolicy, Secret};
use callbox::client::{CallClient, ClientConfig, ClientError, TokenCredential};
use rand::distr::{Alphanumeric, SampleString};
use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A fresh random device key, mapped to `user` at the stack's token endpoint.
pub fn provision_device(stack: &Stack, user: &str) -> Secret {
    let key = Secret::new(Alphanumeric.sample_string(&mut rand::rng(), 32));
    stack.add_device(key.expose(), user);
    key
}

/// A credential that fetches tokens from the stack's endpoint with `device_key`, and how many fetches it made.
pub fn endpoint_credential(
    stack: &Stack,
    device_key: &Secret,
    policy: RefreshPolicy,
) -> (TokenCredential, Arc<AtomicU32>) {
    let url = stack.token_url();
    let key = device_key.clone();
    let fetches = Arc::new(AtomicU32::new(0));
    let counter = fetches.clone();
    let credential = TokenCredential::with_refresher(
        move || {
            let (url, key, counter) = (url.clone(), key.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                callbox_tokensvc::fetch_token(&url, &key, Duration::from_secs(5)).await.map_err(|e| e.to_string())
            }
        },
        policy,
    );
    (credential, fetches)
}

/// Provisions `user` with a fresh device key and starts its client (registered, `Ready`).
pub async fn appliance(stack: &Stack, user: &str, config: ClientConfig) -> Result<CallClient, ClientError> {
    let key = provision_device(stack, user);
    let (credential, _) = endpoint_credential(stack, &key, RefreshPolicy::default());
    CallClient::create(credential, config).await
}

/// The `main` of the harness's programs: logs (`warn,callbox=info` unless `RUST_LOG` says otherwise), arguments
/// (`Ok(None)`: print the usage), a runtime, and the exit code (2: bad arguments, 1: failed).
pub fn program_main<O, E, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(Vec<String>) -> Result<Option<O>, String>,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    E: Display,
    F: Future<Output = Result<(), E>>,
{
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,callbox=info")).init();
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
