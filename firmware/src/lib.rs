//! callbox: the firmware of a calling appliance. The calling core lives in the `callbox-calling` crate
//! (re-exported as `calling`); this crate adds the I/O around it: Janus signaling, WebRTC media, and the
//! asynchronous calling API (`client`) that the appliance logic and embedding programs use.

pub use callbox_calling as calling;

pub mod appliance;
pub mod client;
pub mod config;
pub mod devices;
pub mod display;
pub mod frame;
pub mod input;
pub mod logging;
pub mod media;
pub mod provisioning;
pub mod signaling;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod test_support;
