//! One frame of a reel as a picture for people, shared by `frames --png` and the gallery.
//!
//! Values are scaled over one range for the frame or one per tensor, and drawn as 16-bit grey
//! (for analysis: padding 0, values 1..=65535) or through the heat-map ramp (padding a grey
//! checkerboard, which no ramp colour is, non-finite values magenta), optionally with tensor
//! boundaries outlined and, for a legend, a colour bar and tensor labels.
//!
//! Memory stays bounded whatever the frame's size. A [`Plan`] is made in one pass over the
//! frame's tiles (one tile held at a time): each tensor run's range, centre and bounding box.
//! [`Plan::draw`] then produces the picture a row at a time, band by band: a band is at most
//! [`BAND_PIXELS`] pixels of whole tile rows, and each band decodes only the tiles inside
//! it. A 4096 × 4096 frame is drawn in 4 bands of 1024 rows, holding a band (8 MiB of 16-bit
//! grey) rather than the frame. `frames --png` streams the rows to [`PngRows`]; the gallery
//! collects them (its frames are the same size bound, and it compresses its PNGs). Frames that
//! are not tiled (at most 128 wide, or from older reels) are decoded whole, in one band.

pub mod font;
pub mod png;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode;
use crate::error::{Error, Result};
use crate::frames::{tile_origin, FrameLayout, TILE_SIDE};
use crate::reel::{heat_lut, Manifest, ReelReader};

pub use png::{PngFormat, PngRows};

/// Pixels of one band of [`Plan::draw`] (whole tile rows, at least one).
pub const BAND_PIXELS: u64 = 4 << 20;

/// Padding cells of colour pictures: a checkerboard of two greys.
pub const PADDING: [[u8; 3]; 2] = [[58, 58, 58], [85, 85, 85]];
/// NaN and infinite values in colour pictures.
pub const NONFINITE: [u8; 3] = [255, 0, 255];
/// Tensor boundaries in colour pictures (65535 in grey ones).
pub const OUTLINE: [u8; 3] = [255, 255, 255];
/// Background of the legend's strip and of the label boxes.
pub const BACKGROUND: [u8; 3] = [24, 24, 24];

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// One range, the frame's smallest to largest finite value.
    Frame,
    /// Each tensor's run from its own smallest to largest finite value.
    Tensor,
}

impl Scale {
    /// `frame` or `tensor`.
    pub fn parse(text: &str) -> Option<Scale> {
        match text {
            "frame" => Some(Scale::Frame),
            "tensor" => Some(Scale::Tensor),
            _ => None,
        }
    }
}

/// Pixel format of a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    /// 16-bit grey: padding and non-finite values 0, values 1..=65535.
    Grey16,
    /// 8-bit RGB through the heat-map ramp.
    Heat,
}

/// What to draw besides the values.
#[derive(Debug, Clone, Copy)]
pub struct Style<'a> {
    /// Pixel format (a legend is always [`Colour::Heat`]).
    pub colour: Colour,
    /// Outline tensor boundaries.
    pub outline: bool,
    /// Outline and label only the tensors whose names match.
    pub only: Option<&'a regex_lite::Regex>,
    /// Add a colour bar at the right and label the tensors.
    pub legend: bool,
}

impl Style<'_> {
    fn format(&self) -> PngFormat {
        if self.legend || self.colour == Colour::Heat {
            PngFormat::Rgb8
        } else {
            PngFormat::Grey16
        }
    }
}

/// One tensor's run inside the frame, for labels, the legend and hover.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// Index in the reel's tensor table.
    pub tensor: u32,
    /// Tensor name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// First element (row-major) of the run.
    pub start: u64,
    /// Elements in the run.
    pub len: u64,
    /// Curve position of its first element.
    pub curve_start: u64,
    /// Smallest and largest finite value of the run (0 when none).
    pub min: f32,
    /// See `min`.
    pub max: f32,
    /// Mean pixel position of the run: where its label goes.
    pub centre: (f64, f64),
    /// Bounding box `[x0, y0, x1, y1]` (inclusive).
    pub bbox: [u32; 4],
}

/// A frame measured for drawing: its size, value range and tensor runs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Frame number.
    pub frame: u64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Values in the frame (the rest is padding).
    pub count: u64,
    /// Colour scale.
    pub scale: Scale,
    /// Range of the frame's finite values (the colour bar's ends).
    pub min: f32,
    /// See `min`.
    pub max: f32,
    /// The tensors' runs, in curve order.
    pub regions: Vec<Region>,
    /// Whether the frame is stored as tiles (drawn band by band).
    #[serde(skip)]
    pub tiled: bool,
}

/// A label placed on the picture: its box (text plus a margin) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Left of the box.
    pub x: u32,
    /// Top of the box.
    pub y: u32,
    /// Box width.
    pub w: u32,
    /// Box height.
    pub h: u32,
    /// The text.
    pub text: String,
}

fn merge_range((lo, hi): (f32, f32), v: f32) -> (f32, f32) {
    if v.is_finite() {
        (lo.min(v), hi.max(v))
    } else {
        (lo, hi)
    }
}

/// Measure frame `frame` of `reel`: one pass over its values.
pub fn plan(
    reel: &Path,
    reader: &mut ReelReader,
    manifest: &Manifest,
    frame: u64,
    scale: Scale,
) -> Result<Plan> {
    if frame >= reader.frame_count() {
        return Err(Error::reel(
            reel,
            format!(
                "frame {frame} does not exist (the reel has {} frames)",
                reader.frame_count()
            ),
        ));
    }
    let tiled = manifest.frames.is_empty() && reader.is_tiled(frame)?;
    let record = decode::frame_record(reel, reader, manifest, frame)?;
    let layout = record.meta.layout;
    let mut regions: Vec<Region> = record
        .segments
        .iter()
        .map(|s| {
            let t = &manifest.tensors[s.tensor as usize];
            Region {
                tensor: s.tensor,
                name: t.name.clone(),
                shape: t.shape.clone(),
                start: s.start,
                len: s.len,
                curve_start: s.curve_start,
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
                centre: (0.0, 0.0),
                bbox: [u32::MAX, u32::MAX, 0, 0],
            }
        })
        .collect();
    let mut sums = vec![(0f64, 0f64); regions.len()];
    let mut frame_range = (f32::INFINITY, f32::NEG_INFINITY);
    decode::for_each_run(
        reel,
        reader,
        manifest,
        frame,
        |_| true,
        |base, values| {
            if regions.is_empty() {
                // Values without a segment map: corrupt metadata, which the record check
                // reports; nothing to measure.
                return Ok(());
            }
            let mut r = regions
                .partition_point(|g| g.curve_start <= base)
                .saturating_sub(1);
            let end = (base + values.len() as u64).min(record.meta.count);
            layout.for_each_cell_in(base, end, |d, x, y| {
                while r + 1 < regions.len() && d >= regions[r + 1].curve_start {
                    r += 1;
                }
                let v = values[(d - base) as usize];
                frame_range = merge_range(frame_range, v);
                let g = &mut regions[r];
                (g.min, g.max) = merge_range((g.min, g.max), v);
                sums[r].0 += f64::from(x);
                sums[r].1 += f64::from(y);
                let b = &mut g.bbox;
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x);
                b[3] = b[3].max(y);
            });
            Ok(())
        },
    )?;
    let finite = |(lo, hi): (f32, f32)| if lo > hi { (0.0, 0.0) } else { (lo, hi) };
    for (g, (sx, sy)) in regions.iter_mut().zip(sums) {
        (g.min, g.max) = finite((g.min, g.max));
        let n = g.len.max(1) as f64;
        g.centre = (sx / n + 0.5, sy / n + 0.5);
    }
    let (min, max) = finite(frame_range);
    Ok(Plan {
        frame,
        width: layout.width,
        height: layout.height,
        count: record.meta.count,
        scale,
        min,
        max,
        regions,
        tiled,
    })
}

/// Font pixels per font unit for a picture `width` wide.
fn font_scale(width: u32) -> u32 {
    (width / 512).clamp(1, 4)
}

/// `v` in 8 characters or fewer where it can be: `-1.23e-2`.
fn short_number(v: f32) -> String {
    format!("{v:.2e}")
}

/// Names for a label, longest first: the name, then (without a trailing `.weight`) its last
/// parts after the layer number, led by `L<layer> `: `encoder.layer.2.output.dense.weight`,
/// `L2 output.dense`, `L2 dense`.
pub fn short_names(name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    let core = name.strip_suffix(".weight").unwrap_or(name);
    let parts: Vec<&str> = core.split('.').collect();
    let layer = parts
        .iter()
        .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let (lead, from) = match layer {
        Some(i) => (format!("L{} ", parts[i]), i + 1),
        None => (String::new(), 0),
    };
    for k in from..parts.len() {
        let text = format!("{lead}{}", parts[k..].join("."));
        if !out.contains(&text) {
            out.push(text);
        }
    }
    if let Some(i) = layer.filter(|&i| i + 1 == parts.len()) {
        out.push(format!("L{}", parts[i]));
    }
    out
}

impl Plan {
    fn layout(&self) -> FrameLayout {
        FrameLayout {
            width: self.width,
            height: self.height,
        }
    }

    /// Index of the region holding curve position `d` (`None` for padding).
    fn region_of(&self, d: u64) -> Option<usize> {
        if d >= self.count {
            return None;
        }
        self.regions
            .partition_point(|r| r.curve_start <= d)
            .checked_sub(1)
    }

    /// The tensor and element at pixel `(x, y)`: `None` for padding or outside the frame.
    pub fn at(&self, x: u32, y: u32) -> Option<(&Region, u64)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let d = self.layout().index(x, y);
        let r = &self.regions[self.region_of(d)?];
        Some((r, r.start + (d - r.curve_start)))
    }

    /// The value at pixel `(x, y)` (`None` for padding or outside the frame): decodes the
    /// one tile holding it.
    pub fn value_at(
        &self,
        reel: &Path,
        reader: &mut ReelReader,
        manifest: &Manifest,
        x: u32,
        y: u32,
    ) -> Result<Option<f32>> {
        if self.at(x, y).is_none() {
            return Ok(None);
        }
        let layout = self.layout();
        let d = layout.index(x, y);
        let mut found = None;
        decode::for_each_run(
            reel,
            reader,
            manifest,
            self.frame,
            |t| tile_origin(&layout, t) == (x & !(TILE_SIDE - 1), y & !(TILE_SIDE - 1)),
            |base, values| {
                if d >= base && d < base + values.len() as u64 {
                    found = Some(values[(d - base) as usize]);
                }
                Ok(())
            },
        )?;
        Ok(found)
    }

    /// Size of the picture [`Plan::draw`] makes with `style`.
    pub fn picture_size(&self, style: &Style) -> (u32, u32) {
        if !style.legend {
            return (self.width, self.height);
        }
        let s = font_scale(self.width);
        (self.width + self.strip_width(s), self.height.max(40 * s))
    }

    /// The colour bar's two texts, top (largest) first.
    fn bar_texts(&self) -> (String, String) {
        match self.scale {
            Scale::Frame => (short_number(self.max), short_number(self.min)),
            Scale::Tensor => ("tensor max".into(), "tensor min".into()),
        }
    }

    fn strip_width(&self, s: u32) -> u32 {
        let (top, bottom) = self.bar_texts();
        let text = font::text_width(&top, s).max(font::text_width(&bottom, s));
        4 * s + 6 * s + 3 * s + text + 3 * s
    }

    /// The legend's strip, `strip_width × height` RGB: the ramp from the largest value (top)
    /// to the smallest, and the two ends written beside it.
    fn strip(&self, s: u32, height: u32) -> (u32, Vec<u8>) {
        let w = self.strip_width(s);
        let lut = heat_lut();
        let mut rgb = vec![0u8; (w * height * 3) as usize];
        for px in rgb.chunks_exact_mut(3) {
            px.copy_from_slice(&BACKGROUND);
        }
        let (top, bottom) = (4 * s, height.saturating_sub(4 * s));
        let span = bottom.saturating_sub(top).max(2) - 1;
        for y in top..bottom {
            let t = 1.0 - f64::from(y - top) / f64::from(span);
            let c = lut[(t.clamp(0.0, 1.0) * 255.0).round() as usize];
            for x in 4 * s..10 * s {
                rgb[((y * w + x) * 3) as usize..][..3].copy_from_slice(&c);
            }
        }
        let (hi, lo) = self.bar_texts();
        let th = font::text_height(s);
        for (text, ty) in [(hi, top), (lo, bottom.saturating_sub(th))] {
            let tw = font::text_width(&text, s);
            for py in 0..th {
                for px in 0..tw {
                    if font::ink(&text, s, px, py) {
                        let (x, y) = (13 * s + px, ty + py);
                        if x < w && y < height {
                            rgb[((y * w + x) * 3) as usize..][..3].copy_from_slice(&OUTLINE);
                        }
                    }
                }
            }
        }
        (w, rgb)
    }

    /// Labels for the tensors of the frame (those `only` matches, when given), largest
    /// first, each at its largest run's centre, on one line. A name wider than the tensor's
    /// runs span is cut to its last dot-separated parts that fit; a label that would
    /// overlap one already placed, or fit nowhere, is dropped.
    pub fn labels(&self, only: Option<&regex_lite::Regex>) -> Vec<Label> {
        let s = font_scale(self.width);
        // Per tensor: its largest run, its values in the frame, and the span of its runs (a
        // sampled tensor is many short runs).
        let mut best: HashMap<u32, (usize, u64, u32, u32)> = HashMap::new();
        for (i, r) in self.regions.iter().enumerate() {
            if only.is_some_and(|re| !re.is_match(&r.name)) {
                continue;
            }
            let e = best.entry(r.tensor).or_insert((i, 0, r.bbox[0], r.bbox[2]));
            if r.len > self.regions[e.0].len {
                e.0 = i;
            }
            e.1 += r.len;
            e.2 = e.2.min(r.bbox[0]);
            e.3 = e.3.max(r.bbox[2]);
        }
        let mut order: Vec<(usize, u64, u32, u32)> = best.into_values().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut placed: Vec<Label> = Vec::new();
        let (bw_max, bh) = (self.width, font::text_height(s) + 2 * s);
        if bh > self.height {
            return placed;
        }
        for (i, _, x0, x1) in order {
            let r = &self.regions[i];
            // Room: the width its runs span (labels stay on their tensor).
            let room = (x1.saturating_sub(x0) + 1).min(bw_max);
            let Some(text) = short_names(&r.name)
                .into_iter()
                .find(|t| font::text_width(t, s) + 2 * s <= room)
            else {
                continue;
            };
            let w = font::text_width(&text, s) + 2 * s;
            let cx = (r.centre.0 - f64::from(w) / 2.0).max(0.0) as u32;
            let cy = (r.centre.1 - f64::from(bh) / 2.0).max(0.0) as u32;
            let label = Label {
                x: cx.min(self.width - w),
                y: cy.min(self.height - bh),
                w,
                h: bh,
                text,
            };
            let overlaps = placed.iter().any(|p| {
                label.x < p.x + p.w
                    && p.x < label.x + label.w
                    && label.y < p.y + p.h
                    && p.y < label.y + label.h
            });
            if !overlaps {
                placed.push(label);
            }
        }
        placed
    }

    /// Draw the picture with `style`, giving `row` each row of pixels top to bottom (16-bit
    /// grey big-endian, or RGB), band by band (see the module notes).
    pub fn draw(
        &self,
        reel: &Path,
        reader: &mut ReelReader,
        manifest: &Manifest,
        style: &Style,
        mut row: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let layout = self.layout();
        let format = style.format();
        let bpp = format.bytes();
        let (w, h) = (self.width, self.height);
        let (wu, rgb) = (w as usize, format == PngFormat::Rgb8);
        let (out_w, out_h) = self.picture_size(style);
        let s = font_scale(w);
        let labels = if style.legend {
            self.labels(style.only)
        } else {
            Vec::new()
        };
        let strip = style.legend.then(|| self.strip(s, out_h));
        let outlined: HashSet<u32> = self
            .regions
            .iter()
            .filter(|r| style.only.is_none_or(|re| re.is_match(&r.name)))
            .map(|r| r.tensor)
            .collect();
        let lut = heat_lut();
        let band_rows = if self.tiled {
            ((BAND_PIXELS / u64::from(w)) as u32 / TILE_SIDE).max(1) * TILE_SIDE
        } else {
            h
        };
        let owner = |x: u32, y: u32| {
            self.region_of(layout.index(x, y))
                .map_or(u32::MAX, |i| self.regions[i].tensor)
        };
        let mut line = vec![0u8; out_w as usize * bpp];
        let mut y0 = 0u32;
        while y0 < h {
            let y1 = (y0 + band_rows).min(h);
            let rows = (y1 - y0) as usize;
            let mut band = vec![0u8; rows * wu * bpp];
            if rgb {
                for y in 0..rows {
                    for x in 0..wu {
                        let c = PADDING[((x / 4) + ((y + y0 as usize) / 4)) % 2];
                        band[(y * wu + x) * 3..][..3].copy_from_slice(&c);
                    }
                }
            }
            let mut r = 0usize;
            let regions = &self.regions;
            decode::for_each_run(
                reel,
                reader,
                manifest,
                self.frame,
                |t| (y0..y1).contains(&tile_origin(&layout, t).1),
                |base, values| {
                    if regions.is_empty() {
                        return Ok(());
                    }
                    r = regions
                        .partition_point(|g| g.curve_start <= base)
                        .saturating_sub(1);
                    let end = (base + values.len() as u64).min(self.count);
                    layout.for_each_cell_in(base, end, |d, x, y| {
                        if y < y0 || y >= y1 {
                            return;
                        }
                        while r + 1 < regions.len() && d >= regions[r + 1].curve_start {
                            r += 1;
                        }
                        let (lo, hi) = match self.scale {
                            Scale::Frame => (self.min, self.max),
                            Scale::Tensor => (regions[r].min, regions[r].max),
                        };
                        let v = values[(d - base) as usize];
                        let t = if hi > lo {
                            f64::from((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                        } else {
                            0.5
                        };
                        let at = ((y - y0) as usize * wu + x as usize) * bpp;
                        if rgb {
                            let c = if v.is_finite() {
                                lut[(t * 255.0).round() as usize]
                            } else {
                                NONFINITE
                            };
                            band[at..at + 3].copy_from_slice(&c);
                        } else {
                            let g = if v.is_finite() {
                                1 + (t * 65534.0).round() as u16
                            } else {
                                0
                            };
                            band[at..at + 2].copy_from_slice(&g.to_be_bytes());
                        }
                    });
                    Ok(())
                },
            )?;
            if style.outline {
                // Owners of the band's rows and the rows either side: geometry only.
                let from = y0.saturating_sub(1);
                let to = (y1 + 1).min(h);
                let mut owners = vec![u32::MAX; (to - from) as usize * wu];
                for y in from..to {
                    for x in 0..w {
                        owners[(y - from) as usize * wu + x as usize] = owner(x, y);
                    }
                }
                let at = |x: u32, y: u32| owners[(y - from) as usize * wu + x as usize];
                for y in y0..y1 {
                    for x in 0..w {
                        let me = at(x, y);
                        if me == u32::MAX || !outlined.contains(&me) {
                            continue;
                        }
                        // Runs of one tensor that follow each other are not outlined from
                        // each other; padding is outlined from both sides.
                        let edge = (x + 1 < w && at(x + 1, y) != me)
                            || (y + 1 < h && at(x, y + 1) != me)
                            || (x > 0 && at(x - 1, y) == u32::MAX)
                            || (y > 0 && at(x, y - 1) == u32::MAX);
                        if edge {
                            let p = ((y - y0) as usize * wu + x as usize) * bpp;
                            if rgb {
                                band[p..p + 3].copy_from_slice(&OUTLINE);
                            } else {
                                band[p..p + 2].copy_from_slice(&u16::MAX.to_be_bytes());
                            }
                        }
                    }
                }
            }
            for label in labels.iter().filter(|l| l.y < y1 && l.y + l.h > y0) {
                for y in label.y.max(y0)..(label.y + label.h).min(y1) {
                    for x in label.x..label.x + label.w {
                        let ink = font::ink(
                            &label.text,
                            s,
                            x.wrapping_sub(label.x + s),
                            y.wrapping_sub(label.y + s),
                        );
                        let p = ((y - y0) as usize * wu + x as usize) * 3;
                        band[p..p + 3].copy_from_slice(if ink { &OUTLINE } else { &BACKGROUND });
                    }
                }
            }
            for y in 0..rows {
                line[..wu * bpp].copy_from_slice(&band[y * wu * bpp..(y + 1) * wu * bpp]);
                if let Some((sw, strip)) = &strip {
                    let sy = y + y0 as usize;
                    let sw = *sw as usize;
                    line[wu * 3..].copy_from_slice(&strip[sy * sw * 3..(sy + 1) * sw * 3]);
                }
                row(&line)?;
            }
            y0 = y1;
        }
        // Rows below a frame shorter than its legend.
        if let Some((sw, strip)) = &strip {
            let sw = *sw as usize;
            for sy in h as usize..out_h as usize {
                for px in line[..wu * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&BACKGROUND);
                }
                line[wu * 3..].copy_from_slice(&strip[sy * sw * 3..(sy + 1) * sw * 3]);
                row(&line)?;
            }
        }
        Ok(())
    }
}

/// What `frames --png` draws.
#[derive(Debug, Clone)]
pub struct PictureOptions {
    /// Colour scale.
    pub scale: Scale,
    /// 16-bit grey or the heat map.
    pub colour: Colour,
    /// Colour bar and labels (8-bit colour).
    pub legend: bool,
    /// Only frames holding a tensor whose name matches; those tensors are outlined.
    pub tensor: Option<regex_lite::Regex>,
}

/// Write frames `frames` of `reel` (cut at its end; with `options.tensor`, only those holding
/// a matching tensor) as `DIR/frame_000000.png` and so on, each streamed a row at a time.
/// Returns the files written, in frame order. A range starting past the last frame, or a
/// pattern no tensor of those frames matches, is refused before anything is written.
pub fn write_pictures(
    reel: &Path,
    dir: &Path,
    frames: std::ops::Range<u64>,
    options: &PictureOptions,
) -> Result<Vec<PathBuf>> {
    crate::output::check_dir("--png", dir)?;
    let mut reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    let count = reader.frame_count();
    let range_text = |r: &std::ops::Range<u64>| {
        if r.end == u64::MAX {
            format!("{}-", r.start)
        } else {
            format!("{}-{}", r.start, r.end.saturating_sub(1))
        }
    };
    if frames.start >= count || frames.is_empty() {
        return Err(Error::invalid(
            "--frames",
            range_text(&frames),
            format!(
                "frames of the reel, which has {count} (0-{})",
                count.saturating_sub(1)
            ),
        ));
    }
    let frames = frames.start..frames.end.min(count);
    let chosen: Vec<u64> = match &options.tensor {
        None => frames.clone().collect(),
        Some(re) => {
            let mut chosen = Vec::new();
            for index in frames.clone() {
                let record = decode::frame_record(reel, &mut reader, &manifest, index)?;
                if record
                    .segments
                    .iter()
                    .any(|s| re.is_match(&manifest.tensors[s.tensor as usize].name))
                {
                    chosen.push(index);
                }
            }
            if chosen.is_empty() {
                let named = manifest.tensors.iter().any(|t| re.is_match(&t.name));
                return Err(Error::invalid(
                    "--tensor",
                    re.as_str(),
                    if named {
                        format!(
                            "a pattern matching a tensor of frames {} (the tensors it matches lie in other frames)",
                            range_text(&frames)
                        )
                    } else {
                        "a pattern matching a tensor name of the reel (it matches none)".into()
                    },
                ));
            }
            chosen
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let style = Style {
        colour: options.colour,
        outline: options.legend || options.tensor.is_some(),
        only: options.tensor.as_ref(),
        legend: options.legend,
    };
    let mut written = Vec::new();
    for index in chosen {
        let plan = plan(reel, &mut reader, &manifest, index, options.scale)?;
        let (w, h) = plan.picture_size(&style);
        let out = dir.join(format!("frame_{index:06}.png"));
        let mut png = PngRows::create(&out, w, h, style.format())?;
        plan.draw(reel, &mut reader, &manifest, &style, |line| png.row(line))?;
        png.finish()?;
        written.push(out);
    }
    Ok(written)
}
