//! The meaning of the appliance's controls: what a button does ([`ButtonAction`], as `[buttons]` of
//! `callbox.toml` names it) and which appliance state a status LED shows ([`LedState`], the keys of `[leds]`).
//! The configuration reads them and the appliance logic acts on them; this module depends on neither.

use std::fmt;

use serde::Deserialize;

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonAction {
    /// Call the configured targets (also: answer a ringing call).
    Call,
    /// Mute / unmute the microphone.
    Mute,
    /// Camera on / off.
    Video,
    /// Hang up (also: reject a ringing call).
    HangUp,
}

impl ButtonAction {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ButtonAction::Call => "call",
            ButtonAction::Mute => "mute",
            ButtonAction::Video => "video",
            ButtonAction::HangUp => "hang_up",
        }
    }
}

impl fmt::Display for ButtonAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An appliance state shown by a status LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedState {
    /// Registered and waiting.
    Idle,
    /// A call is ringing (either way).
    Ringing,
    /// In a call.
    InCall,
    /// The microphone is muted.
    Muted,
    /// Something is wrong (not registered, device missing).
    Fault,
    /// For a while after a caller was locked out for wrong door codes (someone may be guessing). A board
    /// without an `alert` LED shows it on the `fault` LED.
    Alert,
}

impl LedState {
    /// Every state, in configuration order.
    pub const ALL: [LedState; 6] =
        [LedState::Idle, LedState::Ringing, LedState::InCall, LedState::Muted, LedState::Fault, LedState::Alert];

    /// The key in `[leds]`.
    pub fn as_str(self) -> &'static str {
        match self {
            LedState::Idle => "idle",
            LedState::Ringing => "ringing",
            LedState::InCall => "in_call",
            LedState::Muted => "muted",
            LedState::Fault => "fault",
            LedState::Alert => "alert",
        }
    }
}

impl fmt::Display for LedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
