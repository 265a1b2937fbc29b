//! callbox-calling: the calling core of the firmware. The object model's state (calls, participants, streams),
//! identifiers, access tokens (`token`), the appliance's admission policy (`admission`) and the event model, as
//! pure logic: it consumes inputs and emits outputs, and owns no socket, device or clock (sans-IO), so that every
//! transition is unit-tested without a server.

pub mod admission;
pub mod backoff;
pub mod core;
pub mod events;
pub mod identifier;
pub mod invitation;
pub mod model;
pub mod publisher_display;
pub mod redact;
pub mod secret;
pub mod state_info;
pub mod token;

#[cfg(test)]
mod fuzz_tests;

pub use crate::core::{
    CallInfo, CallingCore, CallingError, Command, CoreConfig, GroupSignal, MediaSignal, RoomMember, RoomStream,
    RoomStreamKind, SignalEvent,
};
pub use backoff::Backoff;
pub use events::{ConnectionState, Delivery, Event, EventQueue};
pub use identifier::{Identifier, IdentifierError};
pub use model::*;
pub use secret::Secret;
pub use token::{AccessToken, RefreshPolicy, TokenError};
