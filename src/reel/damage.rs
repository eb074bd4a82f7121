//! Slice CRC failures, which FFmpeg's FFV1 decoder reports only through its log.
//!
//! FFmpeg 5.1's FFV1 decoder verifies every slice CRC, and on a mismatch logs
//! "slice CRC mismatch" and conceals the slice from the previous picture: the API call still
//! succeeds. To turn that into an error naming the frame, weightreel installs its own FFmpeg
//! log callback. It prints nothing (our one-line errors are the only output) and records which
//! codec context logged a CRC mismatch; the reader asks after each decoded frame.
//! Our own per-frame CRC32 catches the same damage as a second line of defence.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::Mutex;

/// Codec contexts (by address) that logged a CRC mismatch and have not been asked about yet.
static DAMAGED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The log callback. Generic over the `va_list` argument, whose Rust type differs between
/// platforms; it is never read.
unsafe extern "C" fn on_log<V>(avcl: *mut c_void, level: c_int, fmt: *const c_char, _args: V) {
    if fmt.is_null() || level > ffmpeg_next::ffi::AV_LOG_ERROR {
        return;
    }
    // SAFETY: FFmpeg passes a NUL-terminated format string, valid for this call.
    let fmt = unsafe { CStr::from_ptr(fmt) }.to_bytes();
    if fmt.windows(12).any(|w| w == b"CRC mismatch") {
        // Never panic across the C boundary: a poisoned lock just loses the note, and the
        // per-frame CRC32 still catches the damage.
        if let Ok(mut d) = DAMAGED.lock() {
            d.push(avcl as usize);
        }
    }
}

/// Route FFmpeg's log through [`on_log`]; call once, at init.
pub fn install() {
    // SAFETY: av_log_set_callback stores a function pointer; `on_log` is valid for the whole
    // program, thread-safe (a mutex guards its state) and never unwinds.
    unsafe { ffmpeg_next::ffi::av_log_set_callback(Some(on_log)) };
}

/// Forget earlier reports for the codec context at `ctx`.
pub fn clear(ctx: usize) {
    if let Ok(mut d) = DAMAGED.lock() {
        d.retain(|&c| c != ctx);
    }
}

/// Whether the codec context at `ctx` reported a CRC mismatch since the last [`clear`];
/// clears the report.
pub fn take(ctx: usize) -> bool {
    match DAMAGED.lock() {
        Ok(mut d) => {
            let before = d.len();
            d.retain(|&c| c != ctx);
            d.len() != before
        }
        Err(_) => false,
    }
}
