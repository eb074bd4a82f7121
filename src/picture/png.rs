//! A PNG written a row at a time, so that a picture never has to be whole in memory: a
//! 4096 × 4096 16-bit grey frame is 32 MiB of pixels, and the rows arrive band by band. The
//! `png` crate (image-rs) does the encoding through its stream writer, at its fast deflate
//! setting: the low bytes of 16-bit grey weights are noise, while the 8-bit colour pictures
//! (flat areas, outlines, the colour bar) compress well.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Pixel formats written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngFormat {
    /// 16-bit greyscale, big-endian samples.
    Grey16,
    /// 8-bit RGB.
    Rgb8,
}

impl PngFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PngFormat::Grey16 => 2,
            PngFormat::Rgb8 => 3,
        }
    }
}

/// A PNG being written to a temporary file beside its destination.
pub struct PngRows {
    out: PathBuf,
    tmp: PathBuf,
    stream: Option<png::StreamWriter<'static, File>>,
    row_bytes: usize,
    rows_left: u32,
}

impl Drop for PngRows {
    /// A picture abandoned half-way (an error while drawing) leaves no temporary file; after
    /// [`PngRows::finish`] the temporary name no longer exists.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl PngRows {
    /// Start a `width` × `height` PNG of `format` for `out` (written beside it, renamed by
    /// [`PngRows::finish`]).
    pub fn create(out: &Path, width: u32, height: u32, format: PngFormat) -> Result<PngRows> {
        let dir = out.parent().unwrap_or(Path::new("."));
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut rows = PngRows {
            out: out.to_path_buf(),
            tmp,
            stream: None,
            row_bytes: width as usize * format.bytes(),
            rows_left: height,
        };
        // No BufWriter: the stream writer gathers whole IDAT chunks itself, and writing to the
        // file directly lets a full disk surface as an error rather than in a drop.
        let mut encoder = png::Encoder::new(file, width, height);
        let (colour, depth) = match format {
            PngFormat::Grey16 => (png::ColorType::Grayscale, png::BitDepth::Sixteen),
            PngFormat::Rgb8 => (png::ColorType::Rgb, png::BitDepth::Eight),
        };
        encoder.set_color(colour);
        encoder.set_depth(depth);
        encoder.set_compression(png::Compression::Fast);
        let stream = encoder
            .write_header()
            .and_then(|w| w.into_stream_writer())
            .map_err(|e| rows.fail(e))?;
        rows.stream = Some(stream);
        Ok(rows)
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        let _ = std::fs::remove_file(&self.tmp);
        Error::io(&self.out, std::io::Error::other(e.to_string()))
    }

    /// Append the next row (`width × bytes per pixel` bytes).
    pub fn row(&mut self, pixels: &[u8]) -> Result<()> {
        if pixels.len() != self.row_bytes || self.rows_left == 0 {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::reel(
                &self.out,
                format!(
                    "a PNG row of {} bytes where {} were expected ({} rows left)",
                    pixels.len(),
                    self.row_bytes,
                    self.rows_left
                ),
            ));
        }
        self.rows_left -= 1;
        let stream = self.stream.as_mut().expect("open until finish");
        if let Err(e) = stream.write_all(pixels) {
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// Close the stream, check every row came, and rename the file into place.
    pub fn finish(mut self) -> Result<()> {
        if self.rows_left != 0 {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::reel(
                &self.out,
                format!("the PNG is missing {} rows", self.rows_left),
            ));
        }
        let stream = self.stream.take().expect("open until finish");
        stream.finish().map_err(|e| self.fail(e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| Error::io(&self.out, e))
    }
}
