//! Progress display for long encodes: a live bar on a terminal, a plain line every few seconds
//! otherwise, nothing with `--quiet`. The total is exact (from the headers), never an estimate.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// Progress of one encode.
pub struct Progress {
    mode: ProgressMode,
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Start showing progress of `total` values for `label` (the model name).
    pub fn new(mode: ProgressMode, label: &str, total: u64) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {percent:>3}% {human_pos}/{human_len} params  {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            // Long paths would push the bar off the line: keep the end, which names the model.
            let shown: String = if label.chars().count() > 40 {
                let tail: String = label
                    .chars()
                    .rev()
                    .take(39)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("…{tail}")
            } else {
                label.to_string()
            };
            bar.set_prefix(shown);
            bar
        });
        let now = Instant::now();
        Progress {
            mode,
            label: label.to_string(),
            total,
            done: 0,
            start: now,
            last_line: now,
            bar,
        }
    }

    /// `done` values of the total are encoded; `tensor` is being read; `bytes` read so far.
    pub fn update(&mut self, done: u64, tensor: &str, bytes: u64) {
        // A tensor name from a hostile file must not drive the terminal.
        let tensor = crate::text::printable(tensor);
        self.done = done;
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    let secs = self.start.elapsed().as_secs_f64().max(1e-9);
                    let rate = done as f64 / secs;
                    let eta = if rate > 0.0 {
                        (self.total - done) as f64 / rate
                    } else {
                        0.0
                    };
                    bar.set_position(done);
                    bar.set_message(format!(
                        "{:.1} M params/s  ETA {eta:.0}s  {tensor}  {} read",
                        rate / 1e6,
                        human_bytes(bytes)
                    ));
                }
            }
            ProgressMode::Lines => {
                if self.last_line.elapsed() >= LINE_EVERY {
                    self.last_line = Instant::now();
                    let secs = self.start.elapsed().as_secs_f64();
                    let rate = done as f64 / secs.max(1e-9);
                    let eta = if rate > 0.0 {
                        (self.total - done) as f64 / rate
                    } else {
                        0.0
                    };
                    let pct = if self.total == 0 {
                        100.0
                    } else {
                        done as f64 * 100.0 / self.total as f64
                    };
                    eprintln!(
                        "{}: {pct:.1}% {}/{} params, {:.0} params/s, {tensor}, {} read, ETA {eta:.0}s",
                        self.label,
                        group(done),
                        group(self.total),
                        rate,
                        human_bytes(bytes)
                    );
                }
            }
            ProgressMode::Quiet => {}
        }
    }

    /// Remove the bar; in line mode, print a last line so logs show the finish.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode == ProgressMode::Lines && self.total > 0 {
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "{}: {:.1}% {}/{} params, {:.0} params/s, done in {secs:.2}s",
                self.label,
                self.done as f64 * 100.0 / self.total as f64,
                group(self.done),
                group(self.total),
                self.done as f64 / secs.max(1e-9)
            );
            // Print once, even if finish is called again on drop.
            self.mode = ProgressMode::Quiet;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
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
