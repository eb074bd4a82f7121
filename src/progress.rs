//! Progress display for long encodes: a live bar on a terminal, a plain line every few seconds
//! otherwise, nothing with `--quiet`. The total is exact (from the headers), never an estimate.
//!
//! A ticker thread redraws the bar a few times a second whatever the encoder is doing, so the
//! rate and ETA (indicatif's estimator, which counts a stall as time without progress) keep
//! moving while a large frame is encoded; it also acknowledges Ctrl-C the moment it is pressed.
//! The bar is laid out for the terminal's width (re-read on every tick), shortening the model
//! label and the tensor name rather than wrapping.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::inspect::group;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live bar (stderr is a terminal).
    Bar,
    /// A plain line every few seconds (stderr is a file or pipe).
    Lines,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// Bar on a terminal, lines otherwise, or quiet.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// Interval between plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(3);

/// Interval between redraws of the bar (and checks of the Ctrl-C flag).
const TICK: Duration = Duration::from_millis(100);

/// What Ctrl-C gets at once.
pub const STOPPING: &str = "stopping after the current frame… (Ctrl-C again: quit now)";

/// The bar's message after Ctrl-C.
const STOPPING_PHASE: &str = "stopping after the current frame";

/// What the encoder is at, shared with the ticker.
#[derive(Debug, Default)]
struct Status {
    done: u64,
    tensor: String,
    bytes: u64,
    /// Work after (or between) the values: "encoding frame 3", "joining parts", …
    phase: Option<String>,
}

/// State shared by the encoder's thread and the ticker.
struct Shared {
    mode: ProgressMode,
    label: String,
    total: u64,
    start: Instant,
    status: Mutex<Status>,
    bar: Option<ProgressBar>,
    /// Set when the display is finished; the ticker then ends.
    stop: AtomicBool,
}

/// Progress of one encode; dropping it (or [`Progress::finish`]) clears the bar.
pub struct Progress {
    shared: Arc<Shared>,
    finished: bool,
    /// The ticker thread, woken at the finish so that the encode does not wait out a tick.
    ticker: Option<std::thread::Thread>,
}

impl Progress {
    /// Start showing progress of `total` values for `label` (the model name), without a ticker
    /// (the display moves only on [`Progress::update`] and Ctrl-C is not acknowledged).
    pub fn new(mode: ProgressMode, label: &str, total: u64) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(bar_style(terminal_width(), label, total).0);
            bar
        });
        Progress {
            shared: Arc::new(Shared {
                mode,
                label: label.to_string(),
                total,
                start: Instant::now(),
                status: Mutex::new(Status::default()),
                bar,
                stop: AtomicBool::new(false),
            }),
            finished: false,
            ticker: None,
        }
    }

    /// [`Progress::new`] with a ticker thread in `scope`: the bar is redrawn (and a plain line
    /// printed) on time even while no value arrives, and `cancel` (Ctrl-C) is acknowledged
    /// with [`STOPPING`] the moment it is set, whatever the mode.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        cancel: &'env AtomicBool,
        mode: ProgressMode,
        label: &str,
        total: u64,
    ) -> Progress {
        let mut progress = Progress::new(mode, label, total);
        let shared = progress.shared.clone();
        let ticker = scope.spawn(move || tick(&shared, cancel));
        progress.ticker = Some(ticker.thread().clone());
        progress
    }

    /// `done` values of the total are encoded; `tensor` is being read; `bytes` read so far.
    pub fn update(&mut self, done: u64, tensor: &str, bytes: u64) {
        let shared = &self.shared;
        let first = {
            let mut status = shared.status.lock().expect("status lock");
            let first = status.done == 0 && done > 0;
            status.done = done;
            if status.tensor != tensor {
                // A tensor name from a hostile file must not drive the terminal.
                status.tensor = crate::text::printable(tensor).into_owned();
            }
            status.bytes = bytes;
            // "stopping" stays until the end; any other phase is over once values come again.
            if status.phase.as_deref() != Some(STOPPING_PHASE) {
                status.phase = None;
            }
            first
        };
        if let Some(bar) = &shared.bar {
            if first {
                // The time before the first values (headers, fingerprint) is not the rate.
                bar.reset_eta();
            }
            bar.set_position(done);
            bar.set_message(shared.message(terminal_width()));
        }
    }

    /// Say what is happening besides reading values ("encoding frame 3", "joining 4 parts",
    /// "committing"), until the next [`Progress::update`]. In line mode the next line says it,
    /// so that a phase too short to matter leaves no line in a log.
    pub fn phase(&mut self, what: &str) {
        let shared = &self.shared;
        {
            let mut status = shared.status.lock().expect("status lock");
            if status.phase.as_deref() == Some(STOPPING_PHASE) {
                return;
            }
            status.phase = Some(what.to_string());
        }
        if let Some(bar) = &shared.bar {
            bar.set_message(shared.message(terminal_width()));
        }
    }

    /// Remove the bar; in line mode, print a last line so logs show the finish.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let shared = &self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        if let Some(ticker) = &self.ticker {
            ticker.unpark();
        }
        if let Some(bar) = &shared.bar {
            bar.finish_and_clear();
        }
        let done = shared.status.lock().expect("status lock").done;
        if shared.mode == ProgressMode::Lines && shared.total > 0 {
            let secs = shared.start.elapsed().as_secs_f64();
            eprintln!(
                "{}: {:.1}% {}/{} params, {} params/s, done in {secs:.2}s",
                shared.label,
                done as f64 * 100.0 / shared.total as f64,
                group(done),
                group(shared.total),
                group((done as f64 / secs.max(1e-9)) as u64)
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    /// The bar's message: the phase, else the tensor and the bytes read, shortened to fit.
    fn message(&self, width: Option<usize>) -> String {
        let status = self.status.lock().expect("status lock");
        let room = bar_style(width, &self.label, self.total).1;
        match &status.phase {
            Some(phase) => shorten_tail(&format!("{phase}…"), room),
            None => {
                let read = format!("  {} read", human_bytes(status.bytes));
                let tensor_room = room.saturating_sub(read.chars().count());
                // The bytes read only when the tensor name keeps most of its length.
                if tensor_room < 20 {
                    return shorten_head(&status.tensor, room);
                }
                format!("{}{read}", shorten_head(&status.tensor, tensor_room))
            }
        }
    }

    /// One plain progress line.
    fn line(&self) -> String {
        let status = self.status.lock().expect("status lock");
        let secs = self.start.elapsed().as_secs_f64();
        let rate = status.done as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 {
            self.total.saturating_sub(status.done) as f64 / rate
        } else {
            0.0
        };
        let pct = if self.total == 0 {
            100.0
        } else {
            status.done as f64 * 100.0 / self.total as f64
        };
        let doing = match &status.phase {
            Some(phase) => format!("{phase}…"),
            None => format!("{}, {} read", status.tensor, human_bytes(status.bytes)),
        };
        format!(
            "{}: {pct:.1}% {}/{} params, {} params/s, {doing}, ETA {}",
            self.label,
            group(status.done),
            group(self.total),
            group(rate as u64),
            human_secs(eta)
        )
    }
}

/// The ticker: redraw the bar (at the terminal's current width), print plain lines on time,
/// and acknowledge Ctrl-C once, until the display is finished.
fn tick(shared: &Shared, cancel: &AtomicBool) {
    let mut acknowledged = false;
    let mut last_line = Instant::now();
    let mut width = terminal_width();
    while !shared.stop.load(Ordering::SeqCst) {
        // Woken early by the finish.
        std::thread::park_timeout(TICK);
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if !acknowledged && cancel.load(Ordering::SeqCst) {
            acknowledged = true;
            shared.status.lock().expect("status lock").phase = Some(STOPPING_PHASE.into());
            match &shared.bar {
                // The bar is cleared, the line printed, and the bar drawn again below it.
                Some(bar) => bar.suspend(|| eprintln!("{STOPPING}")),
                None => eprintln!("{STOPPING}"),
            }
        }
        match &shared.bar {
            Some(bar) => {
                let now = terminal_width();
                if now != width {
                    width = now;
                    bar.set_style(bar_style(width, &shared.label, shared.total).0);
                }
                bar.set_message(shared.message(width));
                bar.tick();
            }
            None if shared.mode == ProgressMode::Lines && last_line.elapsed() >= LINE_EVERY => {
                last_line = Instant::now();
                eprintln!("{}", shared.line());
            }
            None => {}
        }
    }
    // Ctrl-C that ended the work before a tick saw it is still acknowledged, before the
    // encode reports what it kept (the scope joins this thread first).
    if !acknowledged && cancel.load(Ordering::SeqCst) {
        eprintln!("{STOPPING}");
    }
}

/// The columns of the terminal on stderr, if it is one.
pub fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a `winsize` into the pointed-to struct and nothing else.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

/// Columns assumed when the width is unknown.
const DEFAULT_WIDTH: usize = 80;

/// The style of a bar for a terminal `width` columns wide, and the columns left for the
/// message. Every part has a fixed width, so that the line never wraps: the label is shortened
/// first, then the bar narrows, and on very narrow terminals the counts go.
fn bar_style(width: Option<usize>, label: &str, total: u64) -> (ProgressStyle, usize) {
    // One column is kept free: writing the last column makes some terminals wrap.
    let width = width.unwrap_or(DEFAULT_WIDTH).saturating_sub(1).max(20);
    // The widest each part can be: "17.8M/22.7M ", "100% ", "999.9 M/s " and "ETA 59m59s ".
    let counts = 2 * short_count(total).len() + 2;
    let rates = 5 + 10 + 11;
    // The message (tensor name, bytes read, phase) gets at least this much.
    const MESSAGE: usize = 12;
    let label_room = (width / 6).clamp(8, 40);
    let shown = shorten_head(label, label_room);
    let label_len = shown.chars().count();
    let bar_at_least = 4 + 10;
    let tail = "{percent:>3}% {rate:>9} ETA {eta_s:<6} {wide_msg}";
    // What is left after the fixed parts goes a third to the bar, the rest to the message.
    let (template, used) = if width >= label_len + bar_at_least + counts + rates + MESSAGE {
        let bar = ((width - label_len - 4 - counts - rates) / 3).clamp(10, 30);
        (
            format!(
                "{{prefix}} [{{bar:{bar}}}] {{count:>{}}} {tail}",
                counts - 1
            ),
            label_len + 4 + bar + counts + rates,
        )
    } else if width >= label_len + bar_at_least + rates + MESSAGE {
        // No room for the counts.
        let bar = ((width - label_len - 4 - rates) / 3).clamp(10, 30);
        (
            format!("{{prefix}} [{{bar:{bar}}}] {tail}"),
            label_len + 4 + bar + rates,
        )
    } else {
        // No room for the bar either: the percentage and the ETA.
        (
            "{prefix} {percent:>3}% ETA {eta_s:<6} {wide_msg}".to_string(),
            label_len + 1 + 5 + 11,
        )
    };
    let style = ProgressStyle::with_template(&template)
        .expect("valid template")
        .progress_chars("=> ")
        .with_key(
            "count",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let len = state.len().unwrap_or(0);
                let _ = write!(w, "{}/{}", short_count(state.pos()), short_count(len));
            },
        )
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", human_rate(state.per_sec()));
            },
        )
        .with_key(
            "eta_s",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                // No estimate before the first values have come.
                if state.pos() == 0 || state.per_sec() <= 0.0 {
                    let _ = w.write_str("-");
                } else {
                    let _ = write!(w, "{}", human_secs(state.eta().as_secs_f64()));
                }
            },
        )
        .with_key(
            "prefix",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&shown);
            },
        );
    (style, width.saturating_sub(used).max(1))
}

/// `text` cut to `room` characters, keeping its end (where a path or tensor name says the
/// most): `…layer.11.mlp.fc1.weight`.
pub fn shorten_head(text: &str, room: usize) -> String {
    let n = text.chars().count();
    if n <= room {
        return text.to_string();
    }
    let keep = room.saturating_sub(1);
    let tail: String = text.chars().skip(n - keep).collect();
    format!("…{tail}")
}

/// `text` cut to `room` characters, keeping its start.
fn shorten_tail(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let head: String = text.chars().take(room.saturating_sub(1)).collect();
    format!("{head}…")
}

/// `9,999`, `17.8M`, `1.1G`: a count in at most six characters.
fn short_count(n: u64) -> String {
    match n {
        0..=9_999 => group(n),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// `12.3 M/s`: values per second.
fn human_rate(per_sec: f64) -> String {
    let per_sec = if per_sec.is_finite() { per_sec } else { 0.0 };
    if per_sec >= 1e9 {
        format!("{:.1} G/s", per_sec / 1e9)
    } else if per_sec >= 1e6 {
        format!("{:.1} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// `42s`, `3m07s`, `2h05m`.
fn human_secs(secs: f64) -> String {
    let secs = if secs.is_finite() {
        secs.max(0.0) as u64
    } else {
        0
    };
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", (secs / 3600).min(99), secs % 3600 / 60),
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shortened_from_the_start_and_phases_from_the_end() {
        let name = "encoder.layer.11.attention.self.query.weight";
        let short = shorten_head(name, 20);
        assert_eq!(short, "…n.self.query.weight");
        assert_eq!(short.chars().count(), 20);
        assert_eq!(shorten_head("gpt2", 20), "gpt2");
        assert_eq!(shorten_tail("joining 4 parts…", 8), "joining…");
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(human_secs(42.4), "42s");
        assert_eq!(human_secs(187.0), "3m07s");
        assert_eq!(human_secs(7500.0), "2h05m");
        assert_eq!(human_rate(12_345_678.0), "12.3 M/s");
        assert_eq!(human_rate(f64::NAN), "0/s");
        assert_eq!(short_count(9_999), "9,999");
        assert_eq!(short_count(22_713_216), "22.7M");
        assert_eq!(short_count(1_100_048_384), "1.1G");
    }

    #[test]
    fn every_width_leaves_room_without_wrapping() {
        for width in [20, 40, 60, 80, 100, 160, 190, 400] {
            let (_, room) = bar_style(
                Some(width),
                "sentence-transformers/all-MiniLM-L6-v2",
                22_713_216,
            );
            assert!(room >= 1 && room < width, "{width}: {room}");
        }
    }
}
