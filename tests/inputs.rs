//! Local inputs that are not what they claim (issue 8, item 6): a FIFO in place of
//! `model.safetensors` or `config.json` is refused at once instead of waiting forever, a huge
//! `config.json` is refused without being read, and a header listing more tensors than the
//! documented limit is refused before it is parsed. One named test per case; each command
//! must finish within 20 s (a hang fails the test).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use safetensors::Dtype;
use support::fixtures::{spec, write_model, write_raw};

/// Run `weightreel inspect PATH`, killing it after 20 s.
fn inspect(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .arg("inspect")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("weightreel inspect {} hung", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

fn one_line_error(out: &Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for w in words {
        assert!(err.contains(w), "missing {w:?} in {err}");
    }
}

#[test]
fn a_fifo_in_place_of_model_safetensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("model.safetensors"));
    let out = inspect(dir.path());
    one_line_error(&out, &["model.safetensors", "not a regular file"]);
}

#[test]
fn a_fifo_in_place_of_config_json_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_model(
        &dir.path().join("model.safetensors"),
        &[spec("w", Dtype::F32, &[4])],
        1,
    );
    mkfifo(&dir.path().join("config.json"));
    let out = inspect(dir.path());
    one_line_error(&out, &["config.json", "not a regular file"]);
}

#[test]
fn a_config_json_over_16_mib_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    write_model(
        &dir.path().join("model.safetensors"),
        &[spec("w", Dtype::F32, &[4])],
        1,
    );
    // Sparse: 2 GiB claimed, nothing written.
    let config = std::fs::File::create(dir.path().join("config.json")).unwrap();
    config.set_len(2 << 30).unwrap();
    let out = inspect(dir.path());
    one_line_error(
        &out,
        &["config.json", "2147483648 bytes", "16777216-byte limit"],
    );
}

#[test]
fn a_header_with_more_tensors_than_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = weightreel::source::header::MAX_TENSORS + 1;
    let entries: Vec<String> = (0..n)
        .map(|i| format!(r#""t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#))
        .collect();
    let path = write_raw(
        &dir.path().join("many.safetensors"),
        None,
        &format!("{{{}}}", entries.join(",")),
        &[],
    );
    let out = inspect(&path);
    one_line_error(
        &out,
        &["many.safetensors", &format!("header lists {n} tensors")],
    );
}

#[test]
fn a_json_file_is_named_as_not_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    std::fs::write(&path, "{\n  \"model_type\": \"bert\"\n}\n").unwrap();
    let out = inspect(&path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {}: not a safetensors file (starts with `{{`)\n",
            path.display()
        )
    );
}
