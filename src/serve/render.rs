//! One frame of a reel as a picture for people: decoded values through the heat-map ramp,
//! padding as a grey checkerboard (no ramp colour is grey), non-finite values magenta, and
//! optionally each tensor's boundary outlined in white. Only the frame shown is read
//! ([`ReelReader::read_frame`]), and PNGs made are kept in a cache bounded in bytes.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::frames::FrameLayout;
use crate::reel::{heat_lut, png_rgb, Manifest, ReelReader};

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

/// What a picture is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct View {
    /// Frame number.
    pub frame: u64,
    /// Colour scale.
    pub scale: Scale,
    /// Outline tensor boundaries.
    pub outline: bool,
}

/// Padding cells: a checkerboard of two greys.
pub const PADDING: [[u8; 3]; 2] = [[58, 58, 58], [85, 85, 85]];
/// NaN and infinite values.
pub const NONFINITE: [u8; 3] = [255, 0, 255];
/// Tensor boundaries.
pub const OUTLINE: [u8; 3] = [255, 255, 255];

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

/// A rendered frame.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// Frame number.
    pub frame: u64,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Values in the frame (the rest is padding).
    pub count: u64,
    /// Colour scale.
    pub scale: Scale,
    /// Range of the frame scale (the colour bar's ends).
    pub min: f32,
    /// See `min`.
    pub max: f32,
    /// The tensors' runs, in curve order.
    pub regions: Vec<Region>,
    /// The PNG.
    #[serde(skip)]
    pub png: Vec<u8>,
}

impl Rendered {
    /// The tensor and element at pixel `(x, y)`: `None` for padding or outside the picture.
    pub fn at(&self, x: u32, y: u32) -> Option<(&Region, u64)> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let layout = FrameLayout {
            width: self.width,
            height: self.height,
        };
        let d = layout.index(x, y);
        if d >= self.count {
            return None;
        }
        let i = self.regions.partition_point(|r| r.curve_start <= d);
        let r = &self.regions[i.checked_sub(1)?];
        Some((r, r.start + (d - r.curve_start)))
    }

    /// Bytes the rendering holds (what the cache counts).
    pub fn size(&self) -> usize {
        self.png.len() + self.regions.len() * std::mem::size_of::<Region>()
    }
}

/// Range of the finite values in `v` (`(0, 0)` when none).
fn finite_range(v: &[f32]) -> (f32, f32) {
    let (lo, hi) = v
        .iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

/// Render frame `view.frame` of the reel at `reel`.
pub fn render(reel: &Path, view: View) -> Result<Rendered> {
    let mut reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    if view.frame >= reader.frame_count() {
        return Err(Error::reel(
            reel,
            format!(
                "frame {} does not exist (the reel has {} frames)",
                view.frame,
                reader.frame_count()
            ),
        ));
    }
    let (frame, values) = crate::decode::frame_values(reel, &mut reader, &manifest, view.frame)?;
    let layout = frame.meta.layout;
    let (w, h) = (layout.width, layout.height);
    let (min, max) = finite_range(&values);
    let mut regions: Vec<Region> = frame
        .segments
        .iter()
        .map(|s| {
            let t = &manifest.tensors[s.tensor as usize];
            let from = s.curve_start as usize;
            let (lo, hi) = finite_range(&values[from..from + s.len as usize]);
            Region {
                tensor: s.tensor,
                name: t.name.clone(),
                shape: t.shape.clone(),
                start: s.start,
                len: s.len,
                curve_start: s.curve_start,
                min: lo,
                max: hi,
                centre: (0.0, 0.0),
                bbox: [u32::MAX, u32::MAX, 0, 0],
            }
        })
        .collect();
    let lut = heat_lut();
    let (wu, hu) = (w as usize, h as usize);
    let mut rgb = vec![0u8; wu * hu * 3];
    for y in 0..hu {
        for x in 0..wu {
            let c = PADDING[((x / 4) + (y / 4)) % 2];
            rgb[(y * wu + x) * 3..][..3].copy_from_slice(&c);
        }
    }
    // Tensor of each cell (u32::MAX: padding), for outlines: runs of one tensor that follow
    // each other (sampled encodes) are not outlined from each other.
    let mut owner = if view.outline {
        vec![u32::MAX; wu * hu]
    } else {
        Vec::new()
    };
    let mut sums = vec![(0f64, 0f64); regions.len()];
    let mut r = 0usize;
    layout.for_each_cell(frame.meta.count, |d, x, y| {
        while r + 1 < regions.len() && d >= regions[r + 1].curve_start {
            r += 1;
        }
        let region = &mut regions[r];
        let (lo, hi) = match view.scale {
            Scale::Frame => (min, max),
            Scale::Tensor => (region.min, region.max),
        };
        let v = values[d as usize];
        let colour = if !v.is_finite() {
            NONFINITE
        } else if hi > lo {
            lut[(((v - lo) / (hi - lo)) * 255.0).round().clamp(0.0, 255.0) as usize]
        } else {
            lut[128]
        };
        let at = y as usize * wu + x as usize;
        rgb[at * 3..at * 3 + 3].copy_from_slice(&colour);
        if view.outline {
            owner[at] = region.tensor;
        }
        sums[r].0 += f64::from(x);
        sums[r].1 += f64::from(y);
        let b = &mut region.bbox;
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    });
    for (region, (sx, sy)) in regions.iter_mut().zip(sums) {
        let n = region.len.max(1) as f64;
        region.centre = (sx / n + 0.5, sy / n + 0.5);
    }
    if view.outline {
        for y in 0..hu {
            for x in 0..wu {
                let me = owner[y * wu + x];
                if me == u32::MAX {
                    continue;
                }
                let differs = |ox: usize, oy: usize| owner[oy * wu + ox] != me;
                let edge = (x + 1 < wu && differs(x + 1, y))
                    || (y + 1 < hu && differs(x, y + 1))
                    || (x > 0 && owner[y * wu + x - 1] != me && owner[y * wu + x - 1] == u32::MAX)
                    || (y > 0
                        && owner[(y - 1) * wu + x] != me
                        && owner[(y - 1) * wu + x] == u32::MAX);
                if edge {
                    rgb[(y * wu + x) * 3..][..3].copy_from_slice(&OUTLINE);
                }
            }
        }
    }
    let png = png_rgb(w, h, &rgb).map_err(|e| Error::reel(reel, e))?;
    Ok(Rendered {
        frame: view.frame,
        width: w,
        height: h,
        count: frame.meta.count,
        scale: view.scale,
        min,
        max,
        regions,
        png,
    })
}

/// Renderings of one process, least recently used dropped first, at most `limit` bytes.
pub struct PngCache {
    limit: usize,
    bytes: usize,
    map: HashMap<(i64, View), Arc<Rendered>>,
    order: VecDeque<(i64, View)>,
}

impl PngCache {
    /// An empty cache holding at most `limit` bytes.
    pub fn new(limit: usize) -> PngCache {
        PngCache {
            limit,
            bytes: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Renderings held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The rendering of `view` of entry `entry`, made by `make` when not held. A rendering
    /// larger than the whole cache is returned but not kept.
    pub fn get_or_render(
        &mut self,
        entry: i64,
        view: View,
        make: impl FnOnce() -> Result<Rendered>,
    ) -> Result<Arc<Rendered>> {
        let key = (entry, view);
        if let Some(hit) = self.map.get(&key) {
            let hit = Arc::clone(hit);
            self.order.retain(|k| *k != key);
            self.order.push_back(key);
            return Ok(hit);
        }
        let rendered = Arc::new(make()?);
        let size = rendered.size();
        if size > self.limit {
            return Ok(rendered);
        }
        while self.bytes + size > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.map.remove(&old) {
                self.bytes -= gone.size();
            }
        }
        self.bytes += size;
        self.map.insert(key, Arc::clone(&rendered));
        self.order.push_back(key);
        Ok(rendered)
    }
}
