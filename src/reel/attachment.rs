//! The Matroska attachment that carries the metadata envelope.
//!
//! ffmpeg-next has no safe API for attachment streams, so these two functions touch
//! `AVCodecParameters` directly: the matroska muxer writes an attachment stream's `extradata`
//! as the file's content, and the demuxer hands it back the same way.

use ffmpeg_next::ffi;
use ffmpeg_next::format::context::{Input, Output};
use ffmpeg_next::media;
use ffmpeg_next::Dictionary;

use super::{ATTACHMENT_MIME, ATTACHMENT_NAME};

/// Add an attachment stream holding `data` to `octx`, before its header is written.
pub fn add(octx: &mut Output, data: &[u8]) -> Result<(), String> {
    let size =
        i32::try_from(data.len()).map_err(|_| "metadata is larger than 2 GiB".to_string())?;
    let pad = ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: `octx` is a valid output context; avformat_new_stream returns a stream owned by
    // it (or null, checked). The extradata buffer comes from av_mallocz with FFmpeg's required
    // padding, is fully initialised by the copy, and is owned (and later freed) by codecpar.
    let index = unsafe {
        let st = ffi::avformat_new_stream(octx.as_mut_ptr(), std::ptr::null());
        if st.is_null() {
            return Err("could not add the metadata attachment (out of memory)".into());
        }
        let par = (*st).codecpar;
        (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_ATTACHMENT;
        (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_NONE;
        let buf = ffi::av_mallocz(data.len() + pad) as *mut u8;
        if buf.is_null() {
            return Err("could not add the metadata attachment (out of memory)".into());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        (*par).extradata = buf;
        (*par).extradata_size = size;
        (*st).index as usize
    };
    let mut tags = Dictionary::new();
    tags.set("filename", ATTACHMENT_NAME);
    tags.set("mimetype", ATTACHMENT_MIME);
    if let Some(mut st) = octx.stream_mut(index) {
        st.set_metadata(tags);
    }
    Ok(())
}

/// The content of the metadata attachment of `ictx`, if it has one.
pub fn find(ictx: &Input) -> Option<Vec<u8>> {
    for st in ictx.streams() {
        let par = st.parameters();
        if par.medium() != media::Type::Attachment {
            continue;
        }
        if st.metadata().get("filename") != Some(ATTACHMENT_NAME) {
            continue;
        }
        // SAFETY: `par` points at the stream's codec parameters, alive while `ictx` is
        // borrowed; extradata is either null or extradata_size readable bytes.
        let data = unsafe {
            let p = par.as_ptr();
            let (ptr, len) = ((*p).extradata, (*p).extradata_size);
            if ptr.is_null() || len <= 0 {
                return None;
            }
            std::slice::from_raw_parts(ptr, len as usize).to_vec()
        };
        return Some(data);
    }
    None
}
