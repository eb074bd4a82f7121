//! A PNG written a row at a time, so that a picture never has to be whole in memory: a
//! 4096 × 4096 16-bit grey frame is 32 MiB of pixels, and the rows arrive band by band.
//!
//! The zlib stream holds *stored* (uncompressed) deflate blocks: no compression crate, and
//! 16-bit grey pictures of weights gain little from deflate (their low bytes are noise). The
//! file is the pixels plus 0.02 %. Rows are filtered with filter 0 (none).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Largest stored deflate block.
const BLOCK: usize = 65_535;

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
    file: BufWriter<File>,
    row_bytes: usize,
    rows_left: u32,
    /// Deflate payload not yet written as a block.
    pending: Vec<u8>,
    adler: (u32, u32),
    /// The two zlib header bytes lead `pending` (until the first block is written).
    zlib_header: bool,
}

impl Drop for PngRows {
    /// A picture abandoned half-way (an error while drawing) leaves no temporary file; after
    /// [`PngRows::finish`] the temporary name no longer exists.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn chunk(w: &mut impl Write, kind: &[u8; 4], data: &[u8]) -> std::io::Result<()> {
    w.write_all(&(data.len() as u32).to_be_bytes())?;
    w.write_all(kind)?;
    w.write_all(data)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    w.write_all(&crc.finalize().to_be_bytes())
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
            file: BufWriter::with_capacity(1 << 20, file),
            row_bytes: width as usize * format.bytes(),
            rows_left: height,
            pending: Vec::with_capacity(BLOCK),
            adler: (1, 0),
            zlib_header: true,
        };
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        let (depth, colour) = match format {
            PngFormat::Grey16 => (16u8, 0u8),
            PngFormat::Rgb8 => (8, 2),
        };
        ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
        let start = (|| {
            rows.file.write_all(b"\x89PNG\r\n\x1a\n")?;
            chunk(&mut rows.file, b"IHDR", &ihdr)?;
            // zlib header: deflate, 32 KiB window, no dictionary, check bits.
            rows.pending.extend_from_slice(&[0x78, 0x01]);
            Ok(())
        })();
        if let Err(e) = start {
            return Err(rows.fail(e));
        }
        Ok(rows)
    }

    fn fail(&self, e: std::io::Error) -> Error {
        let _ = std::fs::remove_file(&self.tmp);
        Error::io(&self.out, e)
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
        self.data(&[0])?;
        self.data(pixels)
    }

    fn data(&mut self, mut bytes: &[u8]) -> Result<()> {
        // Adler-32 in pieces small enough that the sums cannot overflow before the modulo.
        for piece in bytes.chunks(5552) {
            let (mut a, mut b) = self.adler;
            for &x in piece {
                a += u32::from(x);
                b += a;
            }
            self.adler = (a % 65_521, b % 65_521);
        }
        while !bytes.is_empty() {
            // The first block also carries the two zlib header bytes ahead of its header.
            let header = if self.zlib_header { 2 } else { 0 };
            let room = BLOCK + header - self.pending.len();
            let take = room.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == BLOCK + header {
                self.block(false)?;
            }
        }
        Ok(())
    }

    /// Write the pending payload as one stored block in its own IDAT chunk.
    fn block(&mut self, last: bool) -> Result<()> {
        let header = if self.zlib_header { 2 } else { 0 };
        self.zlib_header = false;
        let len = (self.pending.len() - header) as u16;
        let mut idat = Vec::with_capacity(self.pending.len() + 9);
        idat.extend_from_slice(&self.pending[..header]);
        idat.push(u8::from(last));
        idat.extend_from_slice(&len.to_le_bytes());
        idat.extend_from_slice(&(!len).to_le_bytes());
        idat.extend_from_slice(&self.pending[header..]);
        if last {
            let (a, b) = self.adler;
            idat.extend_from_slice(&((b << 16) | a).to_be_bytes());
        }
        self.pending.clear();
        chunk(&mut self.file, b"IDAT", &idat).map_err(|e| self.fail(e))
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
        self.block(true)?;
        let end = chunk(&mut self.file, b"IEND", &[])
            .and_then(|()| self.file.flush())
            .and_then(|()| std::fs::rename(&self.tmp, &self.out));
        end.map_err(|e| self.fail(e))
    }
}
