//! `weightreel serve` end to end: a store of real MiniLM encodes (two settings), a fine-tune of
//! it and a small synthetic model, served by the real binary and opened in headless Chromium.
//! One test per page, then the server's refusals and its bounded PNG cache without a browser.
#![cfg(all(feature = "serve", feature = "hub"))]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safetensors::Dtype;
use serde_json::Value;
use support::browser::{decode_png, Browser, Server};
use support::cli::{path, run};
use support::{family, fixtures, minilm};
use weightreel::frames::FrameLayout;
use weightreel::reel::{heat_lut, Manifest, ReelFrame, ReelReader};
use weightreel::serve::{render, Gallery, Scale, View};

/// The test store and the names in it.
struct Fixture {
    store: PathBuf,
    minilm: String,
    finetune: String,
    tiny: String,
}

fn encode(store: &Path, model: &Path, extra: &[&str]) {
    // Stored under the path, so the pages' names are the paths the tests hold.
    let mut args = vec![
        "encode",
        path(model),
        "--storage-dir",
        path(store),
        "--name",
        path(model),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "encode {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let store = root.join("store");
        let base = minilm::dir();
        encode(&store, &base, &["--max-params", "200000"]);
        encode(
            &store,
            &base,
            &[
                "--max-params",
                "60000",
                "--chunk-size",
                "4096",
                "--chunk-encoding",
            ],
        );
        let ft = root.join("minilm-finetune");
        std::fs::create_dir_all(&ft).unwrap();
        let tuned = family::fine_tune(&family::load_f32(&minilm::safetensors()), 0.05, 7);
        family::write(&ft.join("model.safetensors"), &tuned, Dtype::F32);
        std::fs::copy(base.join("config.json"), ft.join("config.json")).unwrap();
        encode(&store, &ft, &["--max-params", "100000"]);
        let tiny = root.join("tiny.safetensors");
        fixtures::write_model(
            &tiny,
            &[
                fixtures::spec("layers.0.attn.weight", Dtype::F32, &[64, 64]),
                fixtures::spec("layers.0.mlp.bias", Dtype::F16, &[128]),
            ],
            3,
        );
        encode(&store, &tiny, &["--mode", "lossless"]);
        Fixture {
            store,
            minilm: path(&base).to_string(),
            finetune: path(&ft).to_string(),
            tiny: path(&tiny).to_string(),
        }
    })
}

/// The store's entries as `list --json` prints them.
fn list_json(store: &Path) -> Value {
    let out = run(&["list", "--json", "--storage-dir", path(store)]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Registry id of the entry of `name` with `frames` frames.
fn entry_id(store: &Path, name: &str, frames: Option<u64>) -> (i64, PathBuf) {
    let list = list_json(store);
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["name"] == name && frames.is_none_or(|n| e["totals"]["frames"].as_u64() == Some(n))
        })
        .unwrap_or_else(|| panic!("no entry {name}"));
    (
        e["id"].as_i64().unwrap(),
        store.join(e["totals"]["reel_file"].as_str().unwrap()),
    )
}

/// True when the RGB pixels are not all the same colour.
fn varied(rgb: &[u8]) -> bool {
    rgb.chunks_exact(3).any(|p| p != &rgb[..3])
}

#[test]
fn store_page_lists_sorts_and_filters_the_models() {
    let f = fixture();
    let server = Server::start(&f.store);
    let browser = Browser::start();
    browser.open(&server.url);
    let names = |b: &Browser| {
        b.run("return [...document.querySelectorAll('#models tbody tr td:nth-child(2)')].map(td => td.innerText)")
    };
    let shown = names(&browser);
    let listed: Vec<Value> = list_json(&f.store)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(shown, Value::Array(listed));
    // Sorting by parameters, then the other way.
    let params = |b: &Browser| -> Vec<u64> {
        b.run("return [...document.querySelectorAll('#models tbody tr td:nth-child(5)')].map(td => td.innerText)")
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().replace(',', "").parse().unwrap())
            .collect()
    };
    for order in ["asc", "desc"] {
        browser.run("document.body.dataset.ready = ''; document.querySelector('th[data-key=params]').click()");
        browser.wait_for("return document.body.dataset.ready === '1'");
        let got = params(&browser);
        let mut want = got.clone();
        want.sort_unstable();
        if order == "desc" {
            want.reverse();
        }
        assert_eq!(got, want, "sorted {order}");
    }
    // Four models fit one page.
    let pager = browser.run("return [document.getElementById('prev').disabled, document.getElementById('next').disabled, document.getElementById('page').innerText]");
    assert_eq!(
        pager,
        serde_json::json!([true, true, " page 1 of 1 (4 models) "])
    );
    // The search box filters.
    browser.run("document.body.dataset.ready = ''; const q = document.getElementById('q'); q.value = 'tiny.safe'; q.dispatchEvent(new Event('input'))");
    browser.wait_for("return document.body.dataset.ready === '1'");
    assert_eq!(names(&browser), serde_json::json!([f.tiny]));
    let (_, _, shot) = decode_png(&browser.screenshot());
    assert!(varied(&shot), "the screenshot is blank");
}

#[test]
fn model_page_draws_charts_and_a_frame_rendered_from_the_reel() {
    let f = fixture();
    let (id, reel) = entry_id(&f.store, &f.minilm, Some(1));
    let server = Server::start(&f.store);
    let browser = Browser::start();
    browser.open(&format!("{}model/{id}", server.url));
    let mut reader = ReelReader::open(&reel).unwrap();
    let manifest = Manifest::parse(&reel, reader.metadata_json()).unwrap();
    let rows = browser.run("return document.querySelectorAll('#tensors tr').length - 1");
    assert_eq!(rows.as_u64(), Some(manifest.tensors.len() as u64));
    let roles: std::collections::BTreeSet<_> = manifest.tensors.iter().map(|t| t.role).collect();
    let charts = browser
        .run("return document.querySelectorAll('#role-charts svg.histogram rect').length / 40");
    assert_eq!(
        charts.as_f64(),
        Some(roles.len() as f64),
        "one 40-bin histogram per role"
    );
    assert!(
        browser
            .run("return document.querySelectorAll('#layer-chart rect').length")
            .as_u64()
            > Some(6)
    );
    // The frame image loaded at the frame's size.
    browser.wait_for("return document.getElementById('frame-image').dataset.loaded === '1'");
    let (w, h) = reader.frame_size(0).unwrap();
    let size = browser.run("const i = document.getElementById('frame-image'); return [i.naturalWidth, i.naturalHeight]");
    assert_eq!(size, serde_json::json!([w, h]));
    // The PNG served is the reel's frame: each value's colour where the curve puts it, padding grey.
    let (status, png) = server.get(&format!("api/model/{id}/frame/0.png?scale=frame&outline=0"));
    assert_eq!(status, 200);
    let (pw, ph, rgb) = decode_png(&png);
    assert_eq!((pw, ph), (w, h));
    // The frame's values as decode gives them (tile by tile for a tiled frame).
    let (_, values) = weightreel::decode::frame_values(&reel, &mut reader, &manifest, 0).unwrap();
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let lut = heat_lut();
    let layout = FrameLayout {
        width: w,
        height: h,
    };
    for (d, &v) in values.iter().enumerate() {
        let (x, y) = layout.xy(d as u64);
        let at = (y * w + x) as usize * 3;
        let want = lut[(((v - lo) / (hi - lo)) * 255.0).round() as usize];
        assert_eq!(rgb[at..at + 3], want, "value {d} at ({x}, {y})");
    }
    let padding = (values.len() as u64..layout.area()).map(|d| layout.xy(d));
    for (x, y) in padding {
        let at = (y * w + x) as usize * 3;
        assert!(
            render::PADDING.contains(&[rgb[at], rgb[at + 1], rgb[at + 2]]),
            "padding at ({x}, {y})"
        );
    }
    // On screen, the image region is not uniform.
    browser.run("document.getElementById('frame-image').scrollIntoView()");
    let rect2 = browser.run("const r = document.getElementById('frame-image').getBoundingClientRect(); return [Math.max(0, r.left), Math.max(0, r.top), Math.min(r.width, 600), Math.min(r.height, 400)]");
    let (sw, _, shot) = decode_png(&browser.screenshot());
    let r: Vec<u32> = rect2
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as u32)
        .collect();
    let region: Vec<u8> = (r[1]..r[1] + r[3])
        .flat_map(|y| {
            let from = ((y * sw + r[0]) * 3) as usize;
            shot[from..from + (r[2] * 3) as usize].to_vec()
        })
        .collect();
    assert!(varied(&region), "the frame image on screen is uniform");
}

#[test]
fn model_page_hover_names_the_tensor_and_element() {
    let f = fixture();
    let (id, reel) = entry_id(&f.store, &f.tiny, None);
    let server = Server::start(&f.store);
    let browser = Browser::start();
    browser.open(&format!("{}model/{id}", server.url));
    browser.wait_for("return document.getElementById('frame-image').dataset.loaded === '1'");
    let mut reader = ReelReader::open(&reel).unwrap();
    let manifest = Manifest::parse(&reel, reader.metadata_json()).unwrap();
    let frame =
        ReelFrame::parse_record(&reel, &manifest, 0, &reader.frame_record(0).unwrap()).unwrap();
    let layout = frame.meta.layout;
    // A pixel of the second tensor, hovered at its centre.
    let seg = frame.segments.last().unwrap();
    let d = seg.curve_start + 5;
    let (x, y) = layout.xy(d);
    browser.run(&format!(
        "const i = document.getElementById('frame-image'); const r = i.getBoundingClientRect();
         const s = r.width / i.naturalWidth;
         i.dispatchEvent(new MouseEvent('mousemove', {{ clientX: r.left + ({x} + 0.5) * s, clientY: r.top + ({y} + 0.5) * s, bubbles: true }}))"
    ));
    let text = browser.wait_for(
        "const t = document.getElementById('tooltip'); return !t.hidden && t.textContent",
    );
    let tensor = &manifest.tensors[seg.tensor as usize];
    let element = seg.start + 5;
    assert!(
        element < 1000,
        "the expected text has no thousands separators"
    );
    let index = match tensor.shape[..] {
        [_, cols] => format!("{}, {}", element / cols as u64, element % cols as u64),
        _ => element.to_string(),
    };
    // The value is the reel's, decoded by the library.
    let (_, values) = weightreel::decode::frame_values(&reel, &mut reader, &manifest, 0).unwrap();
    let value = values[d as usize].to_string();
    assert_eq!(
        text.as_str().unwrap(),
        format!(
            "{} [{index}] = {value} (element {element}) at ({x}, {y})",
            tensor.name
        )
    );
}

#[test]
fn model_page_labels_do_not_overlap_hover_values_come_from_tiles_and_the_preview_plays() {
    let f = fixture();
    // MiniLM in one batch frame of 200,000 values: 512 x 512, stored as 16 tiles.
    let (id, reel) = entry_id(&f.store, &f.minilm, Some(1));
    let mut reader = ReelReader::open(&reel).unwrap();
    let manifest = Manifest::parse(&reel, reader.metadata_json()).unwrap();
    assert!(reader.is_tiled(0).unwrap(), "fixture: a tiled frame");
    let (frame, values) =
        weightreel::decode::frame_values(&reel, &mut reader, &manifest, 0).unwrap();
    let server = Server::start(&f.store);
    // Hover values, through the endpoint the tooltip asks: one per tile row and column.
    let layout = frame.meta.layout;
    for d in (0..frame.meta.count).step_by(12_347) {
        let (x, y) = layout.xy(d);
        let at = server.json(&format!("api/model/{id}/frame/0/at?x={x}&y={y}"));
        assert_eq!(
            at["value_text"].as_str(),
            Some(values[d as usize].to_string().as_str()),
            "value at ({x}, {y})"
        );
    }
    let browser = Browser::start();
    browser.open(&format!("{}model/{id}", server.url));
    browser.wait_for("return document.getElementById('frame-image').dataset.loaded === '1'");
    // Labels: some shown, no two overlapping; a colliding one is hidden, not stacked on top.
    let labels = browser.run(
        "const r = [...document.querySelectorAll('.labels .label')].filter(s => !s.hidden).map(s => s.getBoundingClientRect());
         let overlaps = 0;
         for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++)
           if (r[i].left < r[j].right && r[j].left < r[i].right && r[i].top < r[j].bottom && r[j].top < r[i].bottom) overlaps++;
         return [r.length, overlaps, document.querySelectorAll('.labels .label').length]",
    );
    let counts: Vec<u64> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(counts[0] >= 1, "labels shown: {counts:?}");
    assert_eq!(counts[1], 0, "overlapping labels: {counts:?}");
    // The H.264 preview plays in Chromium's <video>.
    browser.run("document.getElementById('show-preview').click()");
    let played = browser.wait_for(
        "const v = document.getElementById('preview');
         return v && (v.error ? 'error ' + v.error.code : (v.readyState >= 2 && [v.videoWidth, v.videoHeight, v.readyState]))",
    );
    let (w, h) = reader.frame_size(0).unwrap();
    assert_eq!(played[0].as_u64(), Some(u64::from(w)), "{played}");
    assert_eq!(played[1].as_u64(), Some(u64::from(h)), "{played}");
    assert!(played[2].as_u64() >= Some(2), "{played}");
    let note = browser.run("return document.getElementById('preview-note').textContent");
    assert_eq!(
        note.as_str(),
        Some(format!("H.264 High 5.1, {w}x{h}, frames at full size").as_str())
    );
}

#[test]
fn compare_page_heat_map_has_one_cell_per_layer_and_role() {
    let f = fixture();
    let server = Server::start(&f.store);
    let browser = Browser::start();
    let q = |s: &str| s.replace('/', "%2F");
    browser.open(&format!(
        "{}compare?a={}&b={}",
        server.url,
        q(&f.minilm),
        q(&f.finetune)
    ));
    let store = weightreel::store::Store::open_read_only(&f.store).unwrap();
    let a = store.fingerprint(&f.minilm).unwrap().unwrap();
    let b = store.fingerprint(&f.finetune).unwrap().unwrap();
    let c = weightreel::search::compare(&a, &b);
    let grid = c.layer_grid(&a);
    let cells = browser.run("return document.querySelectorAll('#heatmap td.cell').length");
    assert_eq!(
        cells.as_u64(),
        Some((grid.layers.len() * grid.roles.len()) as u64)
    );
    let filled =
        browser.run("return document.querySelectorAll('#heatmap td.cell:not(.empty)').length");
    let want = grid.cells.iter().flatten().filter(|c| c.is_some()).count();
    assert_eq!(filled.as_u64(), Some(want as u64));
    let changes = browser.run("return document.querySelectorAll('#changes tr').length - 1");
    let first =
        browser.run("return document.querySelector('#changes tr:nth-child(2) td').innerText");
    assert_eq!(
        first.as_str(),
        Some(a.tensors[c.by_change()[0].a].name.as_str()),
        "largest change first"
    );
    assert_eq!(changes.as_u64(), Some(c.matches.len() as u64));
}

#[test]
fn search_and_families_pages_rank_the_fine_tune_first() {
    let f = fixture();
    let server = Server::start(&f.store);
    let browser = Browser::start();
    browser.open(&format!(
        "{}search?q={}",
        server.url,
        f.minilm.replace('/', "%2F")
    ));
    let first = browser
        .run("return document.querySelector('#results tr:nth-child(2) td:nth-child(2)').innerText");
    assert_eq!(first.as_str(), Some(f.finetune.as_str()));
    browser.open(&format!("{}families", server.url));
    let names = browser.run(
        "return [...document.querySelectorAll('svg.family text.name')].map(t => t.textContent)",
    );
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&f.minilm.as_str()) && names.contains(&f.finetune.as_str()),
        "{names:?}"
    );
    assert_eq!(
        browser
            .run("return document.querySelectorAll('svg.family line.edge').length")
            .as_u64(),
        Some(1)
    );
    let status = browser.run("return document.getElementById('families-status').textContent");
    assert!(
        status
            .as_str()
            .unwrap()
            .starts_with("1 families of related models"),
        "{status}"
    );
    // The page endpoint pages the related families of /api/families.
    let all = server.json("api/families");
    let related: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["edges"].as_array().unwrap().is_empty())
        .collect();
    let page = server.json("api/families/page?page=0&per=1");
    assert_eq!(page["computing"], false);
    assert_eq!(page["pages"].as_u64(), Some(related.len() as u64));
    assert_eq!(&page["families"][0], related[0]);
    let past = server.json("api/families/page?page=5&per=1");
    assert_eq!(past["families"].as_array().map(Vec::len), Some(0));
}

#[test]
fn json_endpoints_give_what_the_cli_prints() {
    let f = fixture();
    let server = Server::start(&f.store);
    assert_eq!(server.json("api/list"), list_json(&f.store));
    let out = run(&["stats", "--json", "--storage-dir", path(&f.store)]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server.json("api/stats"), stats);
    let cli = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--json", "--storage-dir", path(&f.store)]);
        let out = run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let q = |s: &str| s.replace('/', "%2F");
    assert_eq!(
        server.json(&format!(
            "api/compare?a={}&b={}",
            q(&f.minilm),
            q(&f.finetune)
        )),
        cli(&["compare", &f.minilm, &f.finetune])
    );
    assert_eq!(
        server.json(&format!("api/search?q={}", q(&f.minilm))),
        cli(&["search", &f.minilm])
    );
    assert_eq!(server.json("api/families"), cli(&["tree"]));
    let page = server.json("api/models?per=2&page=1&sort=params&order=desc");
    assert_eq!(page["total"], 4);
    assert_eq!(page["rows"].as_array().unwrap().len(), 2);
}

/// A raw request, so that the path reaches the server exactly as written.
fn raw_get(url: &str, target: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[test]
fn paths_outside_the_store_are_refused() {
    let f = fixture();
    let server = Server::start(&f.store);
    for target in [
        "/../registry.sqlite",
        "/registry.sqlite",
        "/reels/",
        "/api/model/..%2F..%2Fregistry.sqlite",
        "/api/model/1/../../registry.sqlite",
        "/assets/../../Cargo.toml",
        "/api/model/999",
        "/api/model/1/frame/..%2Fx.png",
        "/api/model/1/frame/99999.png",
        "/nothing",
    ] {
        let (status, text) = raw_get(&server.url, target);
        assert!(status == 404 || status == 400, "{target}: {status}");
        assert!(
            !text.contains("SQLite format"),
            "{target} served the registry"
        );
    }
}

#[test]
fn another_address_needs_bind() {
    let out = run(&[
        "serve",
        "--port",
        "0.0.0.0:8470",
        "--storage-dir",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bind"), "{err}");
    let out = run(&[
        "serve",
        "--bind",
        "not-an-address",
        "--storage-dir",
        "/nonexistent",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--bind") && err.contains("not-an-address"),
        "{err}"
    );
}

#[test]
fn png_cache_stays_within_its_bound() {
    let f = fixture();
    let list = list_json(&f.store);
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["totals"]["frames"].as_u64() > Some(4))
        .expect("an entry of several frames");
    let reel = f.store.join(e["totals"]["reel_file"].as_str().unwrap());
    let (id, frames) = (
        e["id"].as_i64().unwrap(),
        e["totals"]["frames"].as_u64().unwrap(),
    );
    let view = |k| View {
        frame: k,
        scale: Scale::Tensor,
        outline: true,
    };
    let one = render::render(&reel, view(0)).unwrap().size();
    let limit = one * 5 / 2;
    let mut gallery = Gallery::open(&f.store, limit).unwrap();
    let mut first = Vec::new();
    for k in 0..frames {
        let (status, body) = {
            let r = gallery.get(&format!("/api/model/{id}/frame/{k}.png?scale=tensor"));
            (r.status, r.body)
        };
        assert_eq!(status, 200);
        if k == 0 {
            first = body;
        }
        assert!(
            gallery.cache().bytes() <= limit,
            "cache holds {} > {limit}",
            gallery.cache().bytes()
        );
    }
    assert!(gallery.cache().len() < frames as usize);
    // An evicted frame renders the same again.
    let again = gallery
        .get(&format!("/api/model/{id}/frame/0.png?scale=tensor"))
        .body;
    assert_eq!(again, first);
}

#[test]
fn the_queue_page_shows_the_queues_jobs_and_a_gallery_without_one_says_so() {
    if support::postgres::services_disabled("the_queue_page_shows_the_queues_jobs") {
        return;
    }
    let pg = support::postgres::Postgres::start();
    let url = pg.url();
    let out = run(&["queue", "add", "org/a", "org/b", "org/c", "--queue", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One job parked as a worker would leave it, with its error.
    pg.query(
        "UPDATE wr_jobs SET state = 'parked', attempts = 3, error = 'HTTP 404 for org/c' WHERE model = 'org/c'",
    );
    let f = fixture();
    let server = Server::start_with(&f.store, &["--queue", &url]);
    let status = server.json("/api/queue");
    assert_eq!(
        (status["queued"].as_i64(), status["parked"].as_i64()),
        (Some(2), Some(1)),
        "{status}"
    );

    let browser = Browser::start();
    browser.open(&format!("{}queue", server.url));
    browser.wait_for("return document.body.dataset.ready === '1'");
    let shown = browser.run(
        "return ['queued', 'running', 'done', 'parked'].map((id) => document.getElementById(id).textContent)",
    );
    assert_eq!(shown, serde_json::json!(["2", "0", "0", "1"]));
    let parked = browser.run("return document.getElementById('parked-jobs').textContent");
    assert!(
        parked.as_str().unwrap().contains("HTTP 404 for org/c"),
        "{parked}"
    );

    // Without --queue the endpoint says what to do.
    let plain = Server::start(&f.store);
    let (code, body) = plain.get("/api/queue");
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("--queue URL"));
}
