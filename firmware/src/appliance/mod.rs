//! The appliance: `callbox run --config FILE`, the firmware's main loop. `logic` is its behaviour as pure logic
//! (buttons, ringing, auto-answer, busy, the door code, the LED); `run` connects it to the calling client, the
//! buttons, relay and LEDs, the chime, the screen, systemd (`notify`) and the signals; `setup` builds its parts
//! from the configuration and the board profile; `health` reports the process's resource figures on SIGUSR2
//! and trims the heap after the last call; `warm_up` readies at start what the first call would otherwise wait
//! for (GStreamer's registry).

pub mod health;
pub mod logic;
pub mod notify;
pub mod run;
pub mod setup;
pub mod supervision;
pub mod warm_up;

pub use logic::{Action, Admission, ApplianceLogic, Behaviour, Direction, GuardPolicy, GuardState, Parties, Party};
pub use run::{run, ApplianceError, ApplianceHandle};
pub use setup::{setup, ApplianceSetup, SetupError, SimControls};
