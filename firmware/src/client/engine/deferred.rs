//! The core's commands that must wait, as pure state (no clock inside: `now` comes in, deadlines go out through
//! `poll_timeout`, as the calling core does). A command waits for a Janus timing rule of its handle (`handles`:
//! handle reuse, invite settle); a waiting command holds back the later commands of its call so that each call's
//! commands still run in order, while every other call, the API and shutdown go on being served.

use crate::calling::{CallId, Command};
use std::collections::VecDeque;
use std::time::Instant;

/// At most this many commands wait at once (a call waits at most 1.2 s; the core emits a handful per call).
pub(super) const MAX_DEFERRED: usize = 64;

struct Entry {
    not_before: Instant,
    command: Command,
}

/// Commands waiting for their time, in the order the core gave them.
#[derive(Default)]
pub(super) struct Deferred {
    entries: VecDeque<Entry>,
}

impl Deferred {
    /// Whether a command of `call` waits: a later command of the call must queue behind it.
    pub(super) fn holds(&self, call: CallId) -> bool {
        self.entries.iter().any(|e| e.command.call() == call)
    }

    /// Keeps `command` until `not_before` (and until the earlier commands of its call ran). When the queue is full
    /// the command is given back, to be run now: late for Janus, but never lost.
    pub(super) fn push(&mut self, not_before: Instant, command: Command) -> Result<(), Command> {
        if self.entries.len() >= MAX_DEFERRED {
            return Err(command);
        }
        self.entries.push_back(Entry { not_before, command });
        Ok(())
    }

    /// Puts back a command just taken by `poll_due` whose rule still says wait: at the head of the queue, so that
    /// it stays before the later commands of its call (there is room: it was just taken out).
    pub(super) fn requeue(&mut self, not_before: Instant, command: Command) {
        self.entries.push_front(Entry { not_before, command });
    }

    /// The next command whose time has come and that is the first of its call still waiting.
    pub(super) fn poll_due(&mut self, now: Instant) -> Option<Command> {
        let index = self.firsts().find(|&i| self.entries[i].not_before <= now)?;
        self.entries.remove(index).map(|e| e.command)
    }

    /// When the next waiting command comes due (the engine's deadline for `poll_due`).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.firsts().map(|i| self.entries[i].not_before).min()
    }

    /// Forgets every waiting command (the session was lost: their calls ended with it); returns how many.
    pub(super) fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The indices of the entries that are the first of their call, in queue order.
    fn firsts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.entries.len()).filter(move |&i| {
            let call = self.entries[i].command.call();
            !self.entries.iter().take(i).any(|e| e.command.call() == call)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(call: u64) -> Command {
        Command::Answer { call: CallId(call) }
    }

    fn hang_up(call: u64) -> Command {
        Command::HangUp { call: CallId(call) }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_command_waits_for_its_time_and_the_deadline_says_when() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        assert_eq!(d.poll_timeout(), None);
        d.push(t0 + ms(50), answer(1)).expect("room");
        assert!(d.holds(CallId(1)) && !d.holds(CallId(2)));
        assert_eq!(d.poll_timeout(), Some(t0 + ms(50)));
        assert_eq!(d.poll_due(t0 + ms(49)), None);
        assert_eq!(d.poll_due(t0 + ms(50)), Some(answer(1)));
        assert_eq!((d.len(), d.poll_timeout()), (0, None));
    }

    #[test]
    fn a_later_command_of_the_same_call_runs_after_the_waiting_one_never_before() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        d.push(
            t0 + ms(1200),
            Command::PlaceCall { call: CallId(1), target: crate::calling::Identifier::user("b").expect("id") },
        )
        .expect("room");
        // The hang-up is due at once, but it is not the first of its call.
        d.push(t0, hang_up(1)).expect("room");
        assert_eq!(d.poll_timeout(), Some(t0 + ms(1200)));
        assert_eq!(d.poll_due(t0 + ms(10)), None);
        assert!(matches!(d.poll_due(t0 + ms(1200)), Some(Command::PlaceCall { .. })));
        assert_eq!(d.poll_due(t0 + ms(1200)), Some(hang_up(1)));
    }

    #[test]
    fn a_command_put_back_stays_before_the_later_commands_of_its_call() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        d.push(t0 + ms(50), answer(1)).expect("room");
        d.push(t0, hang_up(1)).expect("room");
        let first = d.poll_due(t0 + ms(50)).expect("due");
        d.requeue(t0 + ms(100), first);
        assert_eq!(d.poll_due(t0 + ms(60)), None);
        assert_eq!(d.poll_timeout(), Some(t0 + ms(100)));
        assert_eq!(d.poll_due(t0 + ms(100)), Some(answer(1)));
        assert_eq!(d.poll_due(t0 + ms(100)), Some(hang_up(1)));
    }

    #[test]
    fn another_call_is_not_held_back_by_a_waiting_one() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        d.push(t0 + ms(1200), answer(1)).expect("room");
        d.push(t0 + ms(50), answer(2)).expect("room");
        assert_eq!(d.poll_timeout(), Some(t0 + ms(50)));
        assert_eq!(d.poll_due(t0 + ms(50)), Some(answer(2)));
        assert_eq!(d.poll_due(t0 + ms(50)), None);
        assert_eq!(d.poll_due(t0 + ms(1200)), Some(answer(1)));
    }

    #[test]
    fn a_full_queue_gives_the_command_back_to_run_now() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        for call in 0..MAX_DEFERRED as u64 {
            d.push(t0 + ms(50), answer(call)).expect("room");
        }
        assert_eq!(d.push(t0 + ms(50), answer(999)), Err(answer(999)));
        assert_eq!(d.clear(), MAX_DEFERRED);
        assert_eq!(d.poll_due(t0 + ms(60)), None);
    }
}
