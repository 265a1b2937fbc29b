//! `bench_display`: time to compose one screen with N video tiles (new 640x480 frames on every tile each time)
//! into an in-memory XRGB8888 framebuffer, at the screen sizes of the boards (issue 4's figure).
//! Usage: bench_display [FRAMES] (default 300).

use std::process::ExitCode;

fn main() -> ExitCode {
    let frames = match std::env::args().nth(1).map(|a| a.parse::<u32>()) {
        None => 300,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: bench_display [FRAMES]");
            return ExitCode::from(2);
        }
    };
    println!("{:<12} {:>6} {:>14}", "screen", "tiles", "ms per screen");
    for (w, h) in [(800, 480), (1280, 720)] {
        for tiles in [1, 4, 9] {
            let per_screen = callbox::display::bench_compose(w, h, tiles, frames);
            println!("{:<12} {:>6} {:>14.2}", format!("{w}x{h}"), tiles, per_screen.as_secs_f64() * 1000.0);
        }
    }
    ExitCode::SUCCESS
}
