//! The gallery's frame pictures: [`crate::picture`]'s heat-map drawing (padding a grey
//! checkerboard, non-finite values magenta, boundaries outlined in white) as PNGs, kept in a
//! cache bounded in bytes. Only the frame shown is read.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::picture::{self, Colour, Plan, Style};
use crate::reel::{png_rgb, Manifest, ReelReader};

pub use crate::picture::{Region, Scale, NONFINITE, OUTLINE, PADDING};

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

/// A rendered frame: its plan (size, range, tensor runs) and its PNG.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    /// Size, value range and tensor runs.
    #[serde(flatten)]
    pub plan: Plan,
    /// The PNG.
    #[serde(skip)]
    pub png: Vec<u8>,
}

impl std::ops::Deref for Rendered {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

impl Rendered {
    /// Bytes the rendering holds (what the cache counts).
    pub fn size(&self) -> usize {
        self.png.len() + self.plan.regions.len() * std::mem::size_of::<Region>()
    }
}

/// Render frame `view.frame` of the reel at `reel` through [`crate::picture`] (the same
/// drawing as `frames --png --heatmap`), as an 8-bit RGB PNG.
pub fn render(reel: &Path, view: View) -> Result<Rendered> {
    let mut reader = ReelReader::open(reel)?;
    let manifest = Manifest::parse(reel, reader.metadata_json())?;
    let plan = picture::plan(reel, &mut reader, &manifest, view.frame, view.scale)?;
    let style = Style {
        colour: Colour::Heat,
        outline: view.outline,
        only: None,
        legend: false,
    };
    let (w, h) = plan.picture_size(&style);
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    plan.draw(reel, &mut reader, &manifest, &style, |row| {
        rgb.extend_from_slice(row);
        Ok(())
    })?;
    let png = png_rgb(w, h, &rgb).map_err(|e| Error::reel(reel, e))?;
    Ok(Rendered { plan, png })
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
