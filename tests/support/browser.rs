//! A real browser for the gallery's tests: Debian's headless Chromium driven through
//! chromedriver's WebDriver HTTP API, and `weightreel serve` as a child process. Tests that
//! use them fail, never skip, when Chromium or chromedriver is missing (`scripts/deps.sh`
//! installs them).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `weightreel serve` on a free port of 127.0.0.1; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
}

impl Server {
    /// Serve the store at `store`.
    pub fn start(store: &Path) -> Server {
        Server::start_with(store, &[])
    }

    /// Serve the store at `store` with more `serve` flags.
    pub fn start_with(store: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weightreel"))
            .args(["serve", "--port", "0", "--storage-dir"])
            .arg(store)
            .args(extra)
            .env_remove("WEIGHTREEL_QUEUE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weightreel serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("weightreel gallery: ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// GET `path` (relative to the root): status and body.
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = match ureq::get(&format!("{}{path}", self.url)).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = response.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        (status, body)
    }

    /// GET `path` as JSON, which must answer 200.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session; the browser and its driver end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post(url: &str, body: &Value) -> Value {
    let text = match ureq::post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(r) => r.into_string().unwrap(),
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "WebDriver {url}: {code} {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("WebDriver {url}: {e}"),
    };
    serde_json::from_str::<Value>(&text).unwrap()["value"].take()
}

impl Browser {
    /// Start chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        for tool in ["chromium", "chromedriver"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is not installed: run scripts/deps.sh (Debian packages chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let value = post(
            &format!("{base}/session"),
            &json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}),
        );
        let session = value["sessionId"].as_str().expect("a session").to_string();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn url(&self, what: &str) -> String {
        format!("{}/session/{}/{what}", self.base, self.session)
    }

    /// Open `url` and wait until the page's script has filled it (`body[data-ready]`).
    pub fn open(&self, url: &str) {
        post(&self.url("url"), &json!({ "url": url }));
        self.wait_for("return document.body && document.body.dataset.ready || null");
        let ready = self.run("return document.body.dataset.ready");
        assert_eq!(
            ready,
            json!("1"),
            "{url} failed: {}",
            self.run("return document.getElementById('main').innerText")
        );
    }

    /// Run `script` in the page; its return value.
    pub fn run(&self, script: &str) -> Value {
        post(
            &self.url("execute/sync"),
            &json!({ "script": script, "args": [] }),
        )
    }

    /// Run `script` until it returns something other than null or false (at most 20 s).
    pub fn wait_for(&self, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.run(script);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {script}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A screenshot of the window as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = ureq::get(&self.url("screenshot"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let v: Value = serde_json::from_str(&b64).unwrap();
        base64_decode(v["value"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A PNG decoded to 8-bit RGB by the real `ffmpeg`: width, height and pixels.
pub fn decode_png(png: &[u8]) -> (u32, u32, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("picture.png");
    std::fs::write(&file, png).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8(probe.stdout).unwrap();
    let (w, h) = text.trim().split_once(',').expect("a picture size");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg cannot decode the PNG");
    (w.parse().unwrap(), h.parse().unwrap(), out.stdout)
}
