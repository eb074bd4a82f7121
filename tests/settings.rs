//! Every encode setting is validated before the first side effect: a bad value fails with one
//! line that names the flag and states the valid range, exit status 2 for usage errors and 1
//! for settings that only the library can check, and the store is left exactly as it was — no
//! work directory, no lock, no reel, no registry change. One named test per case.

mod support;

use std::path::PathBuf;

use safetensors::Dtype;
use support::cli::{listing, path, run};
use support::fixtures::{spec, write_model};

/// A small model, a store that already holds one entry of it, and the store's file listing.
struct Setup {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    store: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.safetensors");
    write_model(
        &model,
        &[
            spec(
                "encoder.layer.0.attention.self.query.weight",
                Dtype::F32,
                &[64, 64],
            ),
            spec("encoder.layer.0.output.dense.weight", Dtype::F32, &[64, 64]),
        ],
        7,
    );
    let store = tmp.path().join("store");
    let out = run(&["encode", path(&model), "--store", path(&store), "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Setup {
        _tmp: tmp,
        model,
        store,
    }
}

/// Run `encode MODEL --store STORE <flags>`: it must fail with exit `code` and one line
/// holding every word of `words`, and leave the store's files as they were.
fn refused(flags: &str, code: i32, words: &[&str]) {
    let s = setup();
    let before = listing(&s.store);
    let registry = std::fs::read(s.store.join("registry.sqlite")).unwrap();
    let mut args = vec!["encode", path(&s.model), "--store", path(&s.store)];
    args.extend(flags.split_whitespace());
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{flags}: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{flags}: not one line: {err}"
    );
    assert!(err.starts_with("error: "), "{flags}: {err}");
    for word in words {
        assert!(err.contains(word), "{flags}: missing {word:?} in {err}");
    }
    assert_eq!(
        listing(&s.store),
        before,
        "{flags}: the store's files changed"
    );
    assert_eq!(
        std::fs::read(s.store.join("registry.sqlite")).unwrap(),
        registry,
        "{flags}: the registry changed"
    );
}

macro_rules! refused {
    ($($name:ident: $flags:expr, $code:expr, $words:expr;)*) => {$(
        #[test]
        fn $name() {
            refused($flags, $code, $words);
        }
    )*};
}

refused! {
    pyramid_finest_not_a_power_of_two: "--pyramid-finest 6", 2, &["--pyramid-finest", "6", "a power of two"];
    pyramid_finest_zero: "--pyramid-finest 0", 2, &["--pyramid-finest", "0", "a power of two"];
    min_efficiency_above_one: "--min-efficiency 1.5", 2, &["--min-efficiency", "1.5", "0.0..=1.0"];
    min_efficiency_negative: "--min-efficiency -0.1", 2, &["--min-efficiency", "-0.1", "0.0..=1.0"];
    chunk_size_zero: "--chunk-encoding --chunk-size 0", 2, &["--chunk-size", ">= 1"];
    chunk_size_above_the_frame_cap: "--chunk-encoding --chunk-size 4096 --max-frame-values 1024", 2, &["--chunk-size", "4096", "1..=1024"];
    checkpoint_every_too_small: "--checkpoint-every 0.001", 2, &["--checkpoint-every", "0.01..=86400"];
    checkpoint_every_too_large: "--checkpoint-every 100000", 2, &["--checkpoint-every", "0.01..=86400"];
    max_frame_values_zero: "--max-frame-values 0", 2, &["--max-frame-values", ">= 1"];
    max_frame_values_tiny: "--max-frame-values 3", 2, &["--max-frame-values", "3", "1024..=1073741824"];
    max_frame_values_huge: "--max-frame-values 2147483648", 2, &["--max-frame-values", "1024..=1073741824"];
    preview_not_mp4: "--preview out.txt", 2, &["--preview", "out.txt", "ending in .mp4"];
    mode_unknown: "--mode jpeg", 2, &["--mode", "jpeg", "u16", "lossless"];
    max_params_zero: "--max-params 0", 2, &["--max-params", ">= 1"];
    efficiency_below_minimum: "--chunk-encoding --chunk-size 5000 --min-efficiency 0.7", 1, &["Efficiency ratio 0.61 is below minimum 0.7"];
    include_pattern_too_long: &format!("--include {}", "(a|b)".repeat(300)), 2, &["--include", "of 1500 bytes", "at most 1024 bytes"];
    exclude_pattern_too_long: &format!("--exclude {}", "a".repeat(1025)), 2, &["--exclude", "of 1025 bytes", "at most 1024 bytes"];
    include_pattern_invalid: "--include (unclosed", 2, &["--include", "'(unclosed'", "a valid regular expression"];
    mode_misspelt: "--mode lossles", 2, &["--mode", "'lossles'", "did you mean 'lossless'?"];
    layers_misspelt: "--layers attension", 2, &["--layers", "'attension'", "did you mean 'attention'?"];
    layers_empty: "--layers=", 2, &["--layers", "''"];
    layers_all_with_a_bogus_role: "--layers all,bogus", 2, &["--layers", "'bogus'"];
}
