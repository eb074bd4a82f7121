//! Reading and checking a safetensors header from a [`ByteSource`] without touching tensor data.
//!
//! Layout (from the safetensors spec): an 8-byte little-endian header length `n`, then `n` bytes
//! of JSON mapping tensor names to `{dtype, shape, data_offsets}` (plus an optional
//! `__metadata__` map of strings), then the data buffer. We reuse the `safetensors` crate's
//! `TensorInfo` and `Dtype` types for the JSON, and check everything ourselves so that each
//! error names the tensor at fault: offsets must tile the data buffer exactly (no gaps, no
//! overlaps), `shape × dtype size` must equal the byte length, and the buffer must end where the
//! file ends.

use std::collections::HashMap;

use safetensors::tensor::TensorInfo as RawTensorInfo;
use safetensors::Dtype;
use serde::Deserialize;

use super::bytes::ByteSource;
use crate::error::{Error, Result};

/// Largest header we accept, as in the `safetensors` crate: a larger claim is a corrupt or
/// hostile file, and honouring it would allocate that much.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Most tensors one file may list. Real checkpoints have up to a few thousand per file (the
/// largest sharded models, tens of thousands in all); a header of a million tiny tensors
/// within [`MAX_HEADER_LEN`] is a hostile file, and planning it would take a gigabyte.
pub const MAX_TENSORS: usize = 200_000;

const DATA_OFFSETS_KEY: &[u8] = b"\"data_offsets\"";

/// How many bytes to read in the first request: most headers fit, so a remote file needs one
/// request for its header.
const FIRST_READ: u64 = 16 * 1024;

/// One tensor entry of a header, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderTensor {
    /// Tensor name as stored.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Absolute byte offset of the first element in the file.
    pub offset: u64,
    /// Length in bytes.
    pub byte_len: u64,
}

impl HeaderTensor {
    /// Absolute offset just past its last byte. [`parse_header_json`] checked that this does
    /// not overflow; saturating keeps a hand-made value from wrapping.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.byte_len)
    }
}

/// A checked header: tensors in data-offset order.
#[derive(Debug, Clone)]
pub struct Header {
    /// Length of the JSON part in bytes.
    pub json_len: u64,
    /// Absolute offset where the data buffer starts (`8 + json_len`).
    pub data_start: u64,
    /// The `__metadata__` map, if any.
    pub metadata: Option<HashMap<String, String>>,
    /// Tensors sorted by offset.
    pub tensors: Vec<HeaderTensor>,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(rename = "__metadata__")]
    metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, RawTensorInfo>,
}

/// Size in bits of one element of `dtype`.
pub fn dtype_bits(dtype: Dtype) -> u64 {
    dtype.bitsize() as u64
}

/// Read and check the header of `source`.
pub fn read_header(source: &dyn ByteSource) -> Result<Header> {
    let file = source.name();
    let file_len = source.len();
    if file_len < 8 {
        return Err(Error::header(
            file,
            format!("file is truncated: {file_len} bytes, less than the 8-byte header length"),
        ));
    }
    // One read for the length and (usually) the whole header.
    let first = FIRST_READ.min(file_len);
    let mut buf = vec![0u8; first as usize];
    source.read_at(0, &mut buf)?;
    let json_len = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if json_len > MAX_HEADER_LEN {
        // Text where the length should be: another kind of file (JSON, a README, a pickle…),
        // which says more than a huge length does.
        let head = &buf[..8];
        if head
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            let shown: String = head
                .iter()
                .take_while(|&&b| b != b'\n')
                .map(|&b| b as char)
                .collect();
            return Err(Error::header(
                file,
                format!(
                    "not a safetensors file (starts with `{}`)",
                    shown.trim_end()
                ),
            ));
        }
        return Err(Error::header(
            file,
            format!("header length {json_len} exceeds the {MAX_HEADER_LEN}-byte limit"),
        ));
    }
    // Cannot overflow: json_len <= MAX_HEADER_LEN.
    let data_start = 8 + json_len;
    if data_start > file_len {
        return Err(Error::header(
            file,
            format!("header length {json_len} is larger than the file ({file_len} bytes)"),
        ));
    }
    if data_start > first {
        let mut rest = vec![0u8; (data_start - first) as usize];
        source.read_at(first, &mut rest)?;
        buf.extend_from_slice(&rest);
    }
    buf.truncate(data_start as usize);
    let header = parse_header_json(file, &buf[8..], data_start)?;
    // Every tensor's end was checked against overflow when the JSON was parsed, and the
    // tensors tile the data from `data_start`, so the last end is where the data ends.
    let expected_len = header.tensors.last().map_or(data_start, HeaderTensor::end);
    if expected_len != file_len {
        let problem = if expected_len > file_len {
            // Name the first tensor that does not fit: either the file was cut short or the
            // header's offsets point past its end.
            if let Some(t) = header.tensors.iter().find(|t| t.end() > file_len) {
                return Err(Error::tensor(
                    file,
                    &t.name,
                    format!(
                        "data ends at byte {} but the file has {file_len} bytes (truncated file or offsets out of range)",
                        t.end()
                    ),
                ));
            }
            format!(
                "file is truncated: tensors need {expected_len} bytes but the file has {file_len}"
            )
        } else {
            format!(
                "tensor offsets do not cover the data: {} bytes after the last tensor",
                file_len - expected_len
            )
        };
        return Err(Error::header(file, problem));
    }
    Ok(header)
}

/// Parse and check the JSON part of a header. `data_start` is `8 + json.len()`.
///
/// This is the function the fuzz target drives: it must never panic on any input.
pub fn parse_header_json(file: &str, json: &[u8], data_start: u64) -> Result<Header> {
    // Counted before parsing, so that a header of a million tiny tensors is refused without
    // building them (every entry has one "data_offsets" key; names can only add to the count).
    let entries = json
        .windows(DATA_OFFSETS_KEY.len())
        .filter(|w| *w == DATA_OFFSETS_KEY)
        .count();
    if entries > MAX_TENSORS {
        return Err(Error::header(
            file,
            format!("header lists {entries} tensors, more than the {MAX_TENSORS} this weightreel reads from one file"),
        ));
    }
    let text = std::str::from_utf8(json)
        .map_err(|e| Error::header(file, format!("header is not valid UTF-8: {e}")))?;
    let raw: RawHeader =
        serde_json::from_str(text).map_err(|e| explain_json_error(file, text, e))?;
    let mut entries: Vec<(String, RawTensorInfo)> = raw.tensors.into_iter().collect();
    // Offset order, then name for a stable order among empty tensors at the same offset.
    entries.sort_by(|a, b| {
        a.1.data_offsets
            .cmp(&b.1.data_offsets)
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut tensors = Vec::with_capacity(entries.len());
    let mut expected_start: u64 = 0;
    for (name, info) in entries {
        let (begin, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if end < begin {
            return Err(Error::tensor(
                file,
                &name,
                format!("data_offsets [{begin}, {end}] end before they begin"),
            ));
        }
        if begin < expected_start {
            return Err(Error::tensor(
                file,
                &name,
                format!("data_offsets [{begin}, {end}] overlap the previous tensor, which ends at {expected_start}"),
            ));
        }
        if begin > expected_start {
            return Err(Error::tensor(
                file,
                &name,
                format!("data_offsets [{begin}, {end}] leave a gap after byte {expected_start}: offsets must cover the data exactly"),
            ));
        }
        let numel = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| {
                Error::tensor(file, &name, format!("shape {:?} overflows", info.shape))
            })?;
        let bits = numel.checked_mul(dtype_bits(info.dtype)).ok_or_else(|| {
            Error::tensor(file, &name, format!("shape {:?} overflows", info.shape))
        })?;
        if bits % 8 != 0 {
            return Err(Error::tensor(
                file,
                &name,
                format!(
                    "shape {:?} of {:?} does not fill whole bytes",
                    info.shape, info.dtype
                ),
            ));
        }
        let byte_len = end - begin;
        if bits / 8 != byte_len {
            return Err(Error::tensor(
                file,
                &name,
                format!(
                    "shape {:?} × {:?} is {} bytes but data_offsets span {byte_len}",
                    info.shape,
                    info.dtype,
                    bits / 8
                ),
            ));
        }
        // The end bounds the start, so one check covers both.
        let offset = data_start
            .checked_add(end)
            .map(|_| data_start + begin)
            .ok_or_else(|| {
                Error::tensor(
                    file,
                    &name,
                    format!(
                        "data_offsets [{begin}, {end}] end past the largest file offset, 2^64 - 1"
                    ),
                )
            })?;
        expected_start = end;
        tensors.push(HeaderTensor {
            name,
            dtype: info.dtype,
            shape: info.shape,
            offset,
            byte_len,
        });
    }
    Ok(Header {
        json_len: data_start.saturating_sub(8),
        data_start,
        metadata: raw.metadata,
        tensors,
    })
}

/// Turn a serde error into a one-line message that names the tensor when one entry is at fault
/// (an unknown dtype, a missing field), by re-reading the header entry by entry.
fn explain_json_error(file: &str, text: &str, err: serde_json::Error) -> Error {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
        for (name, value) in map {
            if name == "__metadata__" {
                if let Err(e) = serde_json::from_value::<HashMap<String, String>>(value) {
                    return Error::header(
                        file,
                        format!("__metadata__ is not a map of strings: {e}"),
                    );
                }
                continue;
            }
            if let Err(e) = serde_json::from_value::<RawTensorInfo>(value) {
                return Error::tensor(file, name, format!("invalid entry: {e}"));
            }
        }
        return Error::header(file, format!("invalid header: {err}"));
    }
    Error::header(file, format!("header is not valid JSON: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    /// A file of an 8-byte length, `json` padded with spaces to 8-byte alignment, then `data`.
    fn file(json: &str, data: &[u8]) -> MemorySource {
        let mut json = json.as_bytes().to_vec();
        while !json.len().is_multiple_of(8) {
            json.push(b' ');
        }
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(data);
        MemorySource::new("mem.safetensors", bytes)
    }

    #[test]
    fn offsets_that_tile_to_the_end_of_u64_are_refused_by_name() {
        // Eight U8 tensors of 2^61 - 1 bytes each tile to 2^64 - 8 bytes: the data's end
        // (plus the header) is past the largest offset a file can have.
        let n: u64 = (1 << 61) - 1;
        let entries: Vec<String> = (0..8u64)
            .map(|i| {
                format!(
                    r#""t{i}":{{"dtype":"U8","shape":[{n}],"data_offsets":[{},{}]}}"#,
                    i * n,
                    (i + 1) * n
                )
            })
            .collect();
        let source = file(&format!("{{{}}}", entries.join(",")), &[]);
        let err = read_header(&source).unwrap_err().to_string();
        assert!(
            err.contains("mem.safetensors") && err.contains("'t7'"),
            "{err}"
        );
        assert!(err.contains("2^64 - 1"), "{err}");
    }

    #[test]
    fn a_tensor_ending_past_the_file_is_named() {
        let source = file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0u8; 8],
        );
        let err = read_header(&source).unwrap_err().to_string();
        assert!(err.contains("'w'") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn more_tensors_than_the_limit_are_refused_before_parsing() {
        let entries: Vec<String> = (0..=MAX_TENSORS)
            .map(|i| format!(r#""t{i}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}"#))
            .collect();
        let source = file(&format!("{{{}}}", entries.join(",")), &[]);
        let err = read_header(&source).unwrap_err().to_string();
        assert!(
            err.contains("header lists 200001 tensors, more than the 200000"),
            "{err}"
        );
    }

    #[test]
    fn a_good_header_reads_from_memory() {
        let source = file(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0u8; 8],
        );
        let header = read_header(&source).unwrap();
        assert_eq!(header.tensors.len(), 1);
        assert_eq!(header.tensors[0].end(), source.len());
    }
}
