//! The progress display on a real pseudo-terminal (issue 11, §6): the bar is drawn within the
//! terminal's width, redrawn while the encode runs, and Ctrl-C (SIGINT) is acknowledged at once
//! on a cleared row, before the encode stops with exit status 130.
//!
//! The model comes from the test Hub server with a delay per request, so that the encode lasts
//! long enough to be interrupted on any machine.

mod support;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::hub_server::HubServer;
use support::minilm;

const MINILM: &str = minilm::REPO;
const COLUMNS: u16 = 64;

/// A pseudo-terminal of `cols` × 24: (master, slave).
fn openpty(cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name buffer and termios are not asked for.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The text as a terminal shows it, row segment by row segment: CSI escape sequences removed,
/// split at every carriage return and line feed.
fn segments(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        plain.push(c);
    }
    plain.split(['\r', '\n']).map(str::to_string).collect()
}

/// Wait until `seen` holds `what` (or `deadline` passes); true when it does.
fn wait_for(seen: &Mutex<Vec<u8>>, what: impl Fn(&str) -> bool, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if what(&String::from_utf8_lossy(&seen.lock().unwrap())) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_bar_fits_the_pty_redraws_and_acknowledges_ctrl_c_at_once() {
    let server = HubServer::start();
    server.add_repo(MINILM, minilm::repo(true));
    // A slow link: every request waits, so the encode takes several seconds.
    server.set_delay(Duration::from_millis(150));
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (master, slave) = openpty(COLUMNS);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args([
            "encode",
            MINILM,
            "--chunk-encoding",
            "--hub-connections",
            "1",
            "--store",
            store.to_str().unwrap(),
        ])
        .env("HF_ENDPOINT", server.url())
        .env("HF_HUB_CACHE", tmp.path().join("empty-cache"))
        .env("HF_TOKEN_PATH", tmp.path().join("no-token"))
        .env("TERM", "xterm-256color")
        .env_remove("WEIGHTREEL_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // The child holds the only slave descriptor now (Command closed ours after the spawn).
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let mut master = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child has closed the slave.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // Streaming has begun when the bar shows 1% or more.
    let streaming = |t: &str| {
        segments(t.as_bytes())
            .iter()
            .any(|r| r.contains("% ") && !r.contains("  0% "))
    };
    assert!(
        wait_for(&seen, streaming, Duration::from_secs(60)),
        "no bar past 0%: {:?}",
        segments(&seen.lock().unwrap())
    );
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child, which is still running (its stderr is still open).
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let sent = Instant::now();
    assert!(
        wait_for(
            &seen,
            |t| t.contains("stopping after the current frame"),
            Duration::from_secs(2)
        ),
        "Ctrl-C was not acknowledged within 2 s: {:?}",
        segments(&seen.lock().unwrap())
    );
    let acknowledged = sent.elapsed();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(130), "stdout: {stdout}");

    let bytes = seen.lock().unwrap().clone();
    let rows = segments(&bytes);
    // indicatif pads the message to the terminal's width; the text itself leaves the last
    // column free (writing it makes some terminals wrap). Messages after the display (the
    // interruption's report) are plain lines that may wrap as any text does.
    let drawn = rows
        .iter()
        .filter(|r| r.contains("% ") || r.contains("stopping after"));
    for row in drawn {
        assert!(
            row.chars().count() <= COLUMNS as usize
                && row.trim_end().chars().count() < COLUMNS as usize,
            "a row of {} columns on a {COLUMNS}-column terminal: {row:?}",
            row.trim_end().chars().count()
        );
    }
    let bars: Vec<&String> = rows.iter().filter(|r| r.contains("% ")).collect();
    assert!(bars.len() >= 3, "the bar was drawn {} times", bars.len());
    // On 64 columns the bar itself is drawn (the counts make room for it).
    let last: Vec<_> = bars.iter().rev().take(10).collect();
    assert!(bars.iter().any(|r| r.contains("] ")), "{last:?}");
    // The label is shortened to fit, keeping the name's end.
    assert!(
        bars.iter()
            .any(|r| r.starts_with("…") && r.contains("LM-L6-v2 [")),
        "{bars:?}"
    );
    // The acknowledgement starts on a cleared row: nothing of the bar is left before it.
    let message = "stopping after the current frame";
    let at = rows.iter().position(|r| r.contains(message)).unwrap();
    assert!(rows[at].starts_with(message), "{:?}", rows[at]);
    // It came while the display was live (not at the end): the bar is drawn again below it.
    assert!(
        rows[at + 1..]
            .iter()
            .any(|r| r.contains("% ") && r.contains("stopping")),
        "{:?}",
        &rows[at..]
    );
    assert!(acknowledged < Duration::from_secs(2), "{acknowledged:?}");
    // The report of what was kept comes after the display is gone.
    let report = rows.iter().position(|r| r.starts_with("Interrupted: kept"));
    assert!(report.is_some_and(|r| r > at), "{rows:?}");
}
