//! Output paths the user names (`decode --out`, `encode --preview`, `frames --png`) never
//! clobber what they should not (issue 8, item 11): a reel of the store, a device, a symbolic
//! link; an existing file stays whole until its replacement is complete, and a failed decode
//! leaves it as it was. One named test per case, each asserting the exact outcome.

mod support;

use std::path::PathBuf;
use std::process::Output;

use safetensors::Dtype;
use support::cli::{path as s, run as wr};
use support::fixtures::{spec, write_model};

struct Stored {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    model: PathBuf,
    store: PathBuf,
    reel: PathBuf,
}

fn stored() -> Stored {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let model = dir.join("m.safetensors");
    write_model(
        &model,
        &[spec(
            "encoder.layer.0.output.dense.weight",
            Dtype::F32,
            &[64, 64],
        )],
        9,
    );
    let store = dir.join("store");
    let out = wr(&[
        "encode",
        s(&model),
        "--store",
        s(&store),
        "--quiet",
        "--json",
    ]);
    assert!(out.status.success(), "{}", err(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reel = PathBuf::from(json[0]["reel"].as_str().unwrap());
    Stored {
        _tmp: tmp,
        dir,
        model,
        store,
        reel,
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// `args` must fail with one line containing every word, as a usage error (exit 2: the
/// output flag names a place that may not be written).
fn refused(args: &[&str], words: &[&str]) {
    let out = wr(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", err(&out));
    let e = err(&out);
    assert_eq!(e.lines().count(), 1, "{e}");
    for w in words {
        assert!(e.contains(w), "{args:?}: missing {w:?} in {e}");
    }
}

#[test]
fn decode_onto_a_reel_of_the_store_is_refused_and_the_reel_kept() {
    let st = stored();
    let before = std::fs::read(&st.reel).unwrap();
    refused(
        &["decode", s(&st.reel), "--out", s(&st.reel)],
        &["--out", "outside the store's reels directory"],
    );
    assert_eq!(std::fs::read(&st.reel).unwrap(), before);
}

#[test]
fn decode_to_a_new_name_inside_the_store_reels_is_refused() {
    let st = stored();
    let out = st.store.join("reels/../reels/new.safetensors");
    refused(&["decode", s(&st.reel), "--out", s(&out)], &["reels"]);
    assert!(!st.store.join("reels/new.safetensors").exists());
}

#[test]
fn decode_to_a_device_is_refused_and_the_device_kept() {
    let st = stored();
    refused(
        &["decode", s(&st.reel), "--out", "/dev/full"],
        &["--out", "/dev/full", "a regular file"],
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn decode_to_a_symbolic_link_is_refused_and_both_kept() {
    let st = stored();
    let target = st.dir.join("target.bin");
    std::fs::write(&target, b"keep me").unwrap();
    let link = st.dir.join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    refused(
        &["decode", s(&st.reel), "--out", s(&link)],
        &["--out", "symbolic link"],
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

#[test]
fn a_failed_decode_keeps_the_existing_output() {
    let st = stored();
    let out = st.dir.join("back.safetensors");
    std::fs::write(&out, b"the previous decode").unwrap();
    // A copy of the reel, cut short: decoding fails part way.
    let broken = st.dir.join("broken.mkv");
    let bytes = std::fs::read(&st.reel).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let o = wr(&["decode", s(&broken), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous decode");
    let leftovers: Vec<_> = std::fs::read_dir(&st.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("weightreel-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn decode_over_an_existing_file_says_it_replaced_it() {
    let st = stored();
    let out = st.dir.join("back.safetensors");
    std::fs::write(&out, b"old").unwrap();
    let o = wr(&["decode", s(&st.reel), "--out", s(&out)]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(replaced the file that was there)"));
    assert!(safetensors::SafeTensors::deserialize(&std::fs::read(&out).unwrap()).is_ok());
}

#[test]
fn frames_png_into_the_store_reels_is_refused() {
    let st = stored();
    let dir = st.store.join("reels");
    refused(
        &["frames", s(&st.reel), "--png", s(&dir)],
        &["--png", "reels"],
    );
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "only the reel is there");
}

#[test]
fn an_encode_preview_onto_a_reel_is_refused_before_anything_is_written() {
    let st = stored();
    let before = std::fs::read(&st.reel).unwrap();
    refused(
        &[
            "encode",
            s(&st.model),
            "--store",
            s(&st.store),
            "--mode",
            "u8",
            "--preview",
            s(&st.reel),
        ],
        &["--preview", "reels"],
    );
    assert_eq!(std::fs::read(&st.reel).unwrap(), before);
    assert!(
        !st.store.join("work").exists()
            || std::fs::read_dir(st.store.join("work"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn printed_names_and_config_values_cannot_drive_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    write_model(
        &dir.join("model.safetensors"),
        &[spec("layer.0.\x1b[2Jweight", Dtype::F32, &[16, 16])],
        3,
    );
    std::fs::write(
        dir.join("config.json"),
        "{\"model_type\": \"bert\\u001b[2J\\nerror: forged\", \"architectures\": [\"X\\u0007\"]}",
    )
    .unwrap();
    let store = tmp.path().join("store");
    for args in [
        vec!["inspect", s(&dir)],
        vec!["encode", s(&dir), "--store", s(&store)],
        vec!["list", "--store", s(&store)],
    ] {
        let out = wr(&args);
        assert!(out.status.success(), "{args:?}: {}", err(&out));
        let text = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        assert!(
            !text.iter().any(|&b| b == 0x1b || b == 0x07),
            "{args:?} printed a raw control character: {}",
            String::from_utf8_lossy(&text)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with("error: forged")),
            "{args:?}: a forged line"
        );
    }
}

/// `weightreel list | head`: a reader that leaves early ends the command quietly (SIGPIPE,
/// as other tools), not with a panic about failed printing.
#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let st = stored();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weightreel"))
        .args(["list", "--store", s(&st.store)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the child (still starting) writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// name → (dtype, shape, bytes) of a safetensors file, and its `__metadata__`.
type Tensors = std::collections::BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn tensors_and_metadata(
    path: &std::path::Path,
) -> (Tensors, std::collections::HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

#[test]
fn minilm_lossless_full_decode_is_the_original_model_with_format_pt_and_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let source = support::minilm::dir();
    let store = tmp.path().join("store");
    let o = wr(&[
        "encode",
        s(&source),
        "--store",
        s(&store),
        "--mode",
        "lossless",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let out_dir = tmp.path().join("decoded");
    let o = wr(&[
        "decode",
        "all-MiniLM-L6-v2",
        "--store",
        s(&store),
        "--model-dir",
        s(&out_dir),
        "--json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["tensors"], 104);
    assert_eq!(summary["verbatim"], 1);
    let (original, _) = tensors_and_metadata(&support::minilm::safetensors());
    let (decoded, meta) = tensors_and_metadata(&out_dir.join("model.safetensors"));
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert_eq!(
        decoded.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );
    for (name, (dtype, shape, bytes)) in &original {
        let (ddtype, dshape, dbytes) = &decoded[name];
        assert_eq!((ddtype, dshape), (dtype, shape), "{name}");
        assert!(dbytes == bytes, "{name}: bytes differ");
    }
    assert_eq!(
        std::fs::read(out_dir.join("config.json")).unwrap(),
        std::fs::read(source.join("config.json")).unwrap()
    );
}

/// Decode `st`'s reel under `umask` and return the output file's permission bits.
fn decoded_mode(umask: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let st = stored();
    let out = st.dir.join("decoded.safetensors");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_weightreel"))
        .args(["decode", s(&st.reel), "--out", s(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    std::fs::metadata(&out).unwrap().permissions().mode() & 0o777
}

#[test]
fn decoded_files_follow_the_umask_022() {
    assert_eq!(decoded_mode("022"), 0o644);
}

#[test]
fn decoded_files_follow_the_umask_077() {
    assert_eq!(decoded_mode("077"), 0o600);
}

/// Encode a one-tensor model of `dtype` with `extra` flags; the summary's `Mode:` line.
fn mode_line(dtypes: &[Dtype], extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    let specs: Vec<_> = dtypes
        .iter()
        .enumerate()
        .map(|(i, d)| {
            spec(
                &format!("encoder.layer.{i}.output.dense.weight"),
                *d,
                &[32, 32],
            )
        })
        .collect();
    write_model(&model, &specs, 5);
    let store = tmp.path().join("store");
    let mut args = vec!["encode", s(&model), "--store", s(&store), "--quiet"];
    args.extend_from_slice(extra);
    let o = wr(&args);
    assert!(o.status.success(), "{}", err(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or_else(|| panic!("no Mode: line"))
        .to_string()
}

macro_rules! mode_cases {
    ($($case:ident: ($dtypes:expr, $extra:expr) => $expected:expr;)*) => {
        $(
            #[test]
            fn $case() {
                assert_eq!(mode_line($dtypes, $extra), $expected);
            }
        )*
    };
}

mode_cases! {
    default_mode_of_an_f32_model_is_u16: (&[Dtype::F32], &[])
        => "u16: the default for 32-bit and mixed sources (--mode lossless keeps every bit)";
    default_mode_of_an_f16_model_is_lossless: (&[Dtype::F16], &[])
        => "lossless: the selected tensors are 16-bit floats, kept bit-exact at about their size (--mode u16 overrides)";
    default_mode_of_a_bf16_model_is_lossless: (&[Dtype::BF16, Dtype::F16], &[])
        => "lossless: the selected tensors are 16-bit floats, kept bit-exact at about their size (--mode u16 overrides)";
    default_mode_of_a_mixed_model_is_u16: (&[Dtype::F16, Dtype::F32], &[])
        => "u16: the default for 32-bit and mixed sources (--mode lossless keeps every bit)";
    mode_flag_overrides_the_default_for_f16: (&[Dtype::F16], &["--mode", "u16"]) => "u16 (--mode)";
}

#[test]
fn encode_summary_gives_frames_frame_size_efficiency_and_the_preview() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    write_model(
        &model,
        &[spec(
            "encoder.layer.0.output.dense.weight",
            Dtype::F32,
            &[100, 100],
        )],
        5,
    );
    let preview = tmp.path().join("p.mp4");
    let o = wr(&[
        "encode",
        s(&model),
        "--store",
        s(&tmp.path().join("store")),
        "--quiet",
        "--preview",
        s(&preview),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "✅ Encoded m");
    assert_eq!(lines[1], "Total Parameters: 10,000");
    assert_eq!(lines[2], "Frames: 1 frame of 10,000 values (batch mode)");
    // 10,000 values in the smallest power-of-two frame that holds them, 128×128.
    assert_eq!(
        lines[3],
        "Frame Size: 128x128 (61.0% of its pixels hold values)"
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!("Preview: {} (", preview.display())),
        "{text}"
    );
    assert!(preview.is_file());
}
