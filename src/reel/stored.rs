//! Reels read from a [`ReelStorage`] (an S3 bucket, a shared directory) through FFmpeg.
//!
//! A storage is *mounted* once ([`mount`], done by `Store::with_reels`) under its location URL;
//! a reel in it is then named by the path `LOCATION/NAME` (`s3://bucket/prefix/bert-1a2b.mkv`),
//! which every reel reader takes like a file path and which error messages show. Opening such
//! a path gives the demuxer a custom AVIO context whose read and seek callbacks are range reads
//! of the storage: FFmpeg's AVIO buffer (of [`WINDOW`] bytes) is the read window, and a read
//! larger than it (a frame's packet) goes to the storage as one request. So decoding a few
//! frames fetches the reel's head, its cues and attachment, and those frames' clusters only.

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};

use ffmpeg_next::{ffi, format};

use crate::store::objects::ReelStorage;

/// Bytes of FFmpeg's read buffer over a stored reel: small reads (Matroska element headers)
/// are served from one request of this size.
pub const WINDOW: usize = 256 << 10;

type Mounted = (String, Arc<dyn ReelStorage>);

static MOUNTS: Mutex<Vec<Mounted>> = Mutex::new(Vec::new());

/// Make the reels of `storage` readable under `LOCATION/NAME` paths; returns the location.
/// Mounting a location again replaces the earlier storage.
pub fn mount(storage: Arc<dyn ReelStorage>) -> String {
    let location = storage.location();
    let mut mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    mounts.retain(|(l, _)| *l != location);
    mounts.push((location.clone(), storage));
    location
}

/// The storage and reel name of a `LOCATION/NAME` path of a mounted storage.
pub fn resolve(path: &Path) -> Option<(Arc<dyn ReelStorage>, String)> {
    let text = path.to_str()?;
    let mounts = MOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    mounts.iter().find_map(|(location, storage)| {
        let name = text.strip_prefix(location.as_str())?.strip_prefix('/')?;
        (!name.is_empty()).then(|| (Arc::clone(storage), name.to_string()))
    })
}

/// What the callbacks read from.
struct Source {
    storage: Arc<dyn ReelStorage>,
    name: String,
    size: u64,
    position: u64,
    /// The last storage error, for the message of a failed open.
    error: Option<String>,
}

/// The custom AVIO context and its source; freed after the demuxer that uses it.
pub(super) struct StoredIo {
    avio: *mut ffi::AVIOContext,
    source: *mut Source,
}

// SAFETY: the context and source are used only by the demuxer they belong to, which is used
// from one thread at a time (as `format::context::Input` is).
unsafe impl Send for StoredIo {}

impl Drop for StoredIo {
    fn drop(&mut self) {
        // SAFETY: both were allocated in `open` and are freed once, after the demuxer closed.
        unsafe {
            if !self.avio.is_null() {
                ffi::av_freep(std::ptr::addr_of_mut!((*self.avio).buffer) as *mut c_void);
                ffi::avio_context_free(&mut self.avio);
            }
            drop(Box::from_raw(self.source));
        }
    }
}

unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
    // SAFETY: `opaque` is the `Source` given to avio_alloc_context, alive while the context is.
    let source = unsafe { &mut *(opaque as *mut Source) };
    if source.position >= source.size {
        return ffi::AVERROR_EOF;
    }
    let n = (source.size - source.position).min(buf_size.max(0) as u64) as usize;
    // SAFETY: FFmpeg hands a buffer of `buf_size` writable bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, n) };
    match source
        .storage
        .read_range(&source.name, source.position, out)
    {
        Ok(()) => {
            source.position += n as u64;
            n as c_int
        }
        Err(e) => {
            source.error = Some(e.to_string());
            ffi::AVERROR(libc::EIO)
        }
    }
}

unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as in `read_packet`.
    let source = unsafe { &mut *(opaque as *mut Source) };
    let whence = whence & !ffi::AVSEEK_FORCE;
    let target = match whence {
        ffi::AVSEEK_SIZE => return source.size as i64,
        libc::SEEK_SET => Some(offset),
        libc::SEEK_CUR => (source.position as i64).checked_add(offset),
        libc::SEEK_END => (source.size as i64).checked_add(offset),
        _ => None,
    };
    match target {
        Some(t) if t >= 0 => {
            source.position = t as u64;
            t
        }
        _ => ffi::AVERROR(libc::EINVAL) as i64,
    }
}

/// Open a demuxer over reel `name` of `storage`.
pub(super) fn open(
    storage: Arc<dyn ReelStorage>,
    name: &str,
) -> std::result::Result<(format::context::Input, StoredIo), String> {
    let size = storage.size(name).map_err(|e| e.to_string())?;
    let source = Box::into_raw(Box::new(Source {
        storage,
        name: name.to_string(),
        size,
        position: 0,
        error: None,
    }));
    // SAFETY: the buffer is FFmpeg-allocated as avio_alloc_context requires and is owned by
    // the context from then on; `StoredIo` frees both (and the source) on drop, after the
    // demuxer, which does not close a custom context itself (AVFMT_FLAG_CUSTOM_IO).
    unsafe {
        let buffer = ffi::av_malloc(WINDOW) as *mut u8;
        let mut io = StoredIo {
            avio: std::ptr::null_mut(),
            source,
        };
        if buffer.is_null() {
            return Err("out of memory".into());
        }
        io.avio = ffi::avio_alloc_context(
            buffer,
            WINDOW as c_int,
            0,
            source as *mut c_void,
            Some(read_packet),
            None,
            Some(seek),
        );
        if io.avio.is_null() {
            ffi::av_free(buffer as *mut c_void);
            return Err("out of memory".into());
        }
        let mut ps = ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err("out of memory".into());
        }
        (*ps).pb = io.avio;
        (*ps).flags |= ffi::AVFMT_FLAG_CUSTOM_IO;
        let url = c"";
        match ffi::avformat_open_input(
            &mut ps,
            url.as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut(),
        ) {
            0 => Ok((format::context::Input::wrap(ps), io)),
            e => Err(match (*source).error.take() {
                Some(why) => why,
                None => ffmpeg_next::Error::from(e).to_string(),
            }),
        }
    }
}
