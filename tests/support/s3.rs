//! A private S3-compatible server for a test: `s3s-fs` (built from crates.io into
//! `target/tools` by scripts/test-services.sh) serving a temporary directory on a free port of
//! 127.0.0.1, with known keys; killed (and its files removed) when dropped. A bucket is a
//! directory of its root.
//!
//! Tests that need it skip only when `WEIGHTREEL_NO_SERVICES=1` is set (see
//! `postgres::services_disabled`); without that variable a missing server is a failure.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "weightreel-test";
pub const SECRET_KEY: &str = "weightreel-test-secret";

pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    pub port: u16,
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/s3s-fs")
}

impl S3Server {
    /// Start the server and wait until it accepts connections.
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        // A free port can be taken between the probe and the start: try a few.
        for _ in 0..5 {
            let port = super::postgres::free_port();
            if let Some(child) = spawn(&root, port, SECRET_KEY) {
                return S3Server { child, root, port };
            }
        }
        panic!("s3s-fs did not start");
    }

    /// Stop the server (until [`S3Server::restart_with_secret`]).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop the server and start it again on the same port and files, expecting `secret`
    /// from now on (a server that begins refusing requests).
    pub fn restart_with_secret(&mut self, secret: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.root, self.port, secret).expect("s3s-fs did not restart");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create bucket `name` (a directory of the server's root).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name)).unwrap();
    }

    /// The directory the server serves (a bucket is a directory of it).
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// Every file under the server's root, relative to it: what the server holds, whatever
    /// the S3 API shows.
    pub fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![self.root.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(self.root.path()).unwrap();
                    files.push(rel.display().to_string());
                }
            }
        }
        files.sort();
        files
    }
}

/// Start s3s-fs on `port`; `None` when it exits or does not answer (the port was taken).
fn spawn(root: &tempfile::TempDir, port: u16, secret: &str) -> Option<Child> {
    let bin = binary();
    assert!(
        bin.exists(),
        "{}: missing: run scripts/test-services.sh (scripts/test.sh does), or set WEIGHTREEL_NO_SERVICES=1 to skip",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", secret])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
