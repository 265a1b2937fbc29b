//! Rooms of ours that a lost session left open, as pure state. Janus's videoroom keeps a room after its creator's
//! session is gone (rooms belong to the plugin, not to a session), and the invitees of a call that ended meanwhile
//! still ring: once connected again the engine destroys each room with its secret and sends the cancellations
//! the core asked for while there was no connection. Bounded: beyond `MAX_ORPHANS` rooms, or `MAX_INVITEES`
//! cancellations per room, the rest is left to Janus and to the invitation's ring time.

use crate::calling::core::MAX_INVITEES;
use crate::calling::invitation::GroupCallId;
use crate::calling::{CallId, Identifier, Secret};

/// Rooms of ours left behind by a lost session, to close once connected again.
pub(super) const MAX_ORPHANS: usize = 16;

/// A room we own whose session was lost.
pub(super) struct Orphan {
    pub call: CallId,
    pub room: u64,
    pub secret: Secret,
    pub call_id: GroupCallId,
    /// Invitees to tell the call is off.
    pub cancels: Vec<Identifier>,
}

/// What became of a cancellation asked for while disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cancel {
    /// Kept: sent once connected again.
    Kept,
    /// The room already holds `MAX_INVITEES` of them: this one is not sent.
    Full,
    /// The call has no orphan room: nothing to cancel through it.
    NoRoom,
}

/// The orphan rooms, in the order they were left.
#[derive(Default)]
pub(super) struct Orphans {
    rooms: Vec<Orphan>,
}

impl Orphans {
    /// Keeps an owned room to close later; `false` when `MAX_ORPHANS` are already kept (the room is left).
    pub(super) fn adopt(&mut self, call: CallId, room: u64, secret: Secret, call_id: GroupCallId) -> bool {
        if self.rooms.len() >= MAX_ORPHANS {
            return false;
        }
        self.rooms.push(Orphan { call, room, secret, call_id, cancels: Vec::new() });
        true
    }

    /// The core withdraws an invitation of `call` while there is no connection.
    pub(super) fn cancel_later(&mut self, call: CallId, target: &Identifier) -> Cancel {
        let Some(orphan) = self.rooms.iter_mut().find(|o| o.call == call) else { return Cancel::NoRoom };
        if orphan.cancels.len() >= MAX_INVITEES {
            return Cancel::Full;
        }
        if !orphan.cancels.contains(target) {
            orphan.cancels.push(target.clone());
        }
        Cancel::Kept
    }

    /// Connected again: every orphan room, to close, with its cancellations; none are kept after.
    pub(super) fn take(&mut self) -> Vec<Orphan> {
        std::mem::take(&mut self.rooms)
    }
}

#[cfg(test)]
mod tests;
