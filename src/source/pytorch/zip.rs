//! The central directory of a zip archive, read from its end in one or two range requests, and
//! the data offsets of its stored entries.
//!
//! A `torch.save` archive stores every entry uncompressed (method 0), so an entry is a byte
//! range of the file. We read only what that needs: the end-of-central-directory record (and
//! its zip64 twin, for archives over 4 GiB or 65,535 entries) from the file's tail, the central
//! directory (usually inside that same tail), and each wanted entry's 30-byte local header,
//! whose name and extra-field lengths give where the data starts. The `zip` crate reads through
//! `Read + Seek` in many small reads and wants to parse every local header itself, which over
//! HTTP means a request each; the format is small enough to read directly.

use std::collections::HashMap;

use super::super::bytes::{in_parallel, ByteSource};
use crate::error::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// The end record is 22 bytes plus a comment of up to 65,535; the zip64 locator 20 before it.
const TAIL: u64 = 22 + 65_535 + 20;
/// The first read of the tail: the end records of an archive without a comment, and the
/// central directory of one with up to about 200 entries.
const FIRST_TAIL: u64 = 16 * 1024;
/// Largest central directory read: 64 MiB is about 500,000 entries.
const MAX_CENTRAL: u64 = 64 << 20;
/// Local headers whose gap is at most this are read in one request; farther ones each get
/// their own (a gap is the data of the entry between them).
const HEADER_GAP: u64 = 4 * 1024;
/// Bytes read for one local header: 30 fixed bytes, the name and torch's padding extra field.
const HEADER_READ: u64 = 512;

/// One entry of the central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name, `/`-separated.
    pub name: String,
    /// 0 = stored, 8 = deflated, …
    pub method: u16,
    /// Bytes as stored.
    pub compressed_size: u64,
    /// Bytes once extracted.
    pub size: u64,
    /// Where its local header starts.
    pub header_offset: u64,
}

/// A zip archive's central directory.
#[derive(Debug, Clone)]
pub struct Archive {
    /// Entries by name.
    pub entries: HashMap<String, Entry>,
    /// Where the central directory starts: every entry's data ends before it.
    pub central_start: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Read the central directory of `source`.
pub fn read_archive(source: &dyn ByteSource) -> Result<Archive> {
    let file = source.name();
    let len = source.len();
    let find_eocd = |tail: &[u8]| {
        (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(tail, i) == EOCD_SIG)
    };
    let read_tail = |n: u64| -> Result<(u64, Vec<u8>)> {
        let n = n.min(len);
        let mut tail = vec![0u8; n as usize];
        source.read_at(len - n, &mut tail)?;
        Ok((len - n, tail))
    };
    // Most archives have no comment: a short tail holds the end record, and often the whole
    // directory; only when it does not is the longest possible tail read.
    let (mut tail_start, mut tail) = read_tail(FIRST_TAIL)?;
    let mut found = find_eocd(&tail);
    if found.is_none() && len > FIRST_TAIL {
        (tail_start, tail) = read_tail(TAIL)?;
        found = find_eocd(&tail);
    }
    let eocd = found.ok_or_else(|| {
        Error::header(
            file,
            "zip archive is truncated or corrupt: no end-of-central-directory record at its end",
        )
    })?;
    let record = &tail[eocd..];
    let mut count = u16_at(record, 10) as u64;
    let mut central_len = u32_at(record, 12) as u64;
    let mut central_start = u32_at(record, 16) as u64;
    let mut record_at = tail_start + eocd as u64;
    if count == 0xffff || central_len == 0xffff_ffff || central_start == 0xffff_ffff {
        // zip64: the locator sits just before the end record and points at the zip64 record.
        if eocd < 20 || u32_at(&tail, eocd - 20) != ZIP64_LOCATOR_SIG {
            return Err(Error::header(
                file,
                "zip archive is corrupt: a zip64 size with no zip64 locator",
            ));
        }
        let at = u64_at(&tail, eocd - 20 + 8);
        if at.checked_add(56).is_none_or(|end| end > record_at) {
            return Err(Error::header(
                file,
                format!("zip archive is corrupt: zip64 record at byte {at} lies outside the file ({len} bytes)"),
            ));
        }
        let mut z = [0u8; 56];
        if at >= tail_start {
            let from = (at - tail_start) as usize;
            z.copy_from_slice(&tail[from..from + 56]);
        } else {
            source.read_at(at, &mut z)?;
        }
        if u32_at(&z, 0) != ZIP64_EOCD_SIG {
            return Err(Error::header(
                file,
                "zip archive is corrupt: no zip64 end record where the locator points",
            ));
        }
        count = u64_at(&z, 32);
        central_len = u64_at(&z, 40);
        central_start = u64_at(&z, 48);
        record_at = at;
    }
    let central_end = central_start.checked_add(central_len);
    if central_end.is_none_or(|end| end > record_at) {
        return Err(Error::header(
            file,
            format!(
                "zip archive is corrupt: its central directory (bytes {central_start}..+{central_len}) lies outside the file ({len} bytes)"
            ),
        ));
    }
    if central_len > MAX_CENTRAL {
        return Err(Error::header(
            file,
            format!("zip central directory of {central_len} bytes is larger than the {MAX_CENTRAL}-byte limit"),
        ));
    }
    let central = if central_start >= tail_start {
        let from = (central_start - tail_start) as usize;
        tail[from..from + central_len as usize].to_vec()
    } else {
        let mut buf = vec![0u8; central_len as usize];
        source.read_at(central_start, &mut buf)?;
        buf
    };
    let mut entries = HashMap::new();
    let mut at = 0usize;
    let corrupt =
        |what: &str| Error::header(file, format!("zip central directory is corrupt: {what}"));
    for _ in 0..count {
        if at + 46 > central.len() || u32_at(&central, at) != CENTRAL_SIG {
            return Err(corrupt("an entry is cut short or has no signature"));
        }
        let h = &central[at..];
        let method = u16_at(h, 10);
        let mut compressed_size = u32_at(h, 20) as u64;
        let mut size = u32_at(h, 24) as u64;
        let name_len = u16_at(h, 28) as usize;
        let extra_len = u16_at(h, 30) as usize;
        let comment_len = u16_at(h, 32) as usize;
        let mut header_offset = u32_at(h, 42) as u64;
        let total = 46 + name_len + extra_len + comment_len;
        if at + total > central.len() {
            return Err(corrupt("an entry runs past the directory's end"));
        }
        let name = String::from_utf8_lossy(&h[46..46 + name_len]).into_owned();
        // The zip64 extra field holds the 32-bit fields that overflowed, in this order.
        let mut extra = &h[46 + name_len..46 + name_len + extra_len];
        while extra.len() >= 4 {
            let (id, n) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
            let body = &extra[4..(4 + n).min(extra.len())];
            if id == 1 {
                let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
                for field in [&mut size, &mut compressed_size, &mut header_offset] {
                    if *field == 0xffff_ffff {
                        *field = fields.next().ok_or_else(|| {
                            corrupt(&format!("entry '{name}' lacks its zip64 sizes"))
                        })?;
                    }
                }
            }
            extra = &extra[(4 + n).min(extra.len())..];
        }
        entries.insert(
            name.clone(),
            Entry {
                name,
                method,
                compressed_size,
                size,
                header_offset,
            },
        );
        at += total;
    }
    Ok(Archive {
        entries,
        central_start,
    })
}

impl Archive {
    /// Where the data of each of `names` starts, from their local headers (read in groups of
    /// nearby headers, concurrently). Each entry must be stored, and its data must end before
    /// the central directory.
    pub fn data_offsets(
        &self,
        source: &dyn ByteSource,
        names: &[&str],
    ) -> Result<HashMap<String, u64>> {
        let file = source.name();
        let mut wanted: Vec<&Entry> = Vec::with_capacity(names.len());
        for name in names {
            let entry = self
                .entries
                .get(*name)
                .ok_or_else(|| Error::header(file, format!("zip archive has no entry '{name}'")))?;
            if entry.method != 0 {
                return Err(Error::header(
                    file,
                    format!("zip entry '{name}' is compressed (method {}); torch.save stores entries uncompressed, and weightreel reads only those", entry.method),
                ));
            }
            wanted.push(entry);
        }
        wanted.sort_by_key(|e| e.header_offset);
        wanted.dedup_by_key(|e| e.header_offset);
        // Headers with at most HEADER_GAP bytes between them are read together.
        let mut groups: Vec<(u64, u64, Vec<&Entry>)> = Vec::new();
        for e in wanted {
            let end = (e.header_offset + HEADER_READ.max(30 + e.name.len() as u64 + 64))
                .min(self.central_start);
            match groups.last_mut() {
                Some(g) if e.header_offset <= g.1 + HEADER_GAP => {
                    g.1 = g.1.max(end);
                    g.2.push(e);
                }
                _ => groups.push((e.header_offset, end, vec![e])),
            }
        }
        let read = in_parallel(&groups, source.concurrency(), |(begin, end, _)| {
            if *begin >= *end {
                return Err(Error::header(
                    file,
                    format!("zip local header at byte {begin} lies outside the entries"),
                ));
            }
            let mut buf = vec![0u8; (end - begin) as usize];
            source.read_at(*begin, &mut buf).map(|()| buf)
        });
        let mut offsets = HashMap::new();
        for ((begin, _, entries), buf) in groups.iter().zip(read) {
            let buf = buf?;
            for e in entries {
                let at = (e.header_offset - begin) as usize;
                let h = buf
                    .get(at..at + 30)
                    .filter(|h| u32_at(h, 0) == LOCAL_SIG)
                    .ok_or_else(|| {
                        Error::header(
                            file,
                            format!(
                                "zip entry '{}': no local header at byte {}",
                                e.name, e.header_offset
                            ),
                        )
                    })?;
                // The data offset needs only the two lengths; the name and extra field
                // themselves need not have been read.
                let data = e.header_offset + 30 + u16_at(h, 26) as u64 + u16_at(h, 28) as u64;
                if data
                    .checked_add(e.size)
                    .is_none_or(|end| end > self.central_start)
                {
                    return Err(Error::header(
                        file,
                        format!("zip entry '{}' ({} bytes at byte {data}) runs past the entries into the central directory", e.name, e.size),
                    ));
                }
                offsets.insert(e.name.clone(), data);
            }
        }
        Ok(offsets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    /// An archive of one stored entry written as zip64 (every 32-bit field saturated, the real
    /// values in the zip64 extra field and end record), as writers do past 4 GiB.
    fn zip64_archive(data: &[u8]) -> Vec<u8> {
        let name = b"archive/data/0";
        let mut z = Vec::new();
        // Local header: signature, version, flags, method 0, time, date, crc, sizes, lengths.
        z.extend(LOCAL_SIG.to_le_bytes());
        z.extend([45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend([0xff; 8]);
        z.extend((name.len() as u16).to_le_bytes());
        z.extend(4u16.to_le_bytes());
        z.extend(name);
        z.extend([0x99, 0x99, 0, 0]); // an empty extra field of another kind
        z.extend(data);
        let central_start = z.len() as u64;
        z.extend(CENTRAL_SIG.to_le_bytes());
        z.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend([0xff; 8]); // sizes
        z.extend((name.len() as u16).to_le_bytes());
        z.extend(28u16.to_le_bytes()); // the zip64 extra field: 4 + 3 × 8
        z.extend([0; 8]); // comment length, disk, attributes
        z.extend([0; 2]);
        z.extend([0xff; 4]); // local header offset
        z.extend(name);
        z.extend(1u16.to_le_bytes());
        z.extend(24u16.to_le_bytes());
        z.extend((data.len() as u64).to_le_bytes());
        z.extend((data.len() as u64).to_le_bytes());
        z.extend(0u64.to_le_bytes());
        let central_len = z.len() as u64 - central_start;
        let record_at = z.len() as u64;
        z.extend(ZIP64_EOCD_SIG.to_le_bytes());
        z.extend(44u64.to_le_bytes());
        z.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z.extend(1u64.to_le_bytes());
        z.extend(1u64.to_le_bytes());
        z.extend(central_len.to_le_bytes());
        z.extend(central_start.to_le_bytes());
        z.extend(ZIP64_LOCATOR_SIG.to_le_bytes());
        z.extend(0u32.to_le_bytes());
        z.extend(record_at.to_le_bytes());
        z.extend(1u32.to_le_bytes());
        z.extend(EOCD_SIG.to_le_bytes());
        z.extend([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        z.extend([0xff; 8]);
        z.extend(0u16.to_le_bytes());
        z
    }

    #[test]
    fn a_zip64_archive_gives_its_entries_and_data_offsets() {
        let source = MemorySource::new("big.bin", zip64_archive(b"12345678"));
        let archive = read_archive(&source).unwrap();
        let entry = &archive.entries["archive/data/0"];
        assert_eq!((entry.size, entry.header_offset, entry.method), (8, 0, 0));
        let offsets = archive.data_offsets(&source, &["archive/data/0"]).unwrap();
        let at = offsets["archive/data/0"];
        let mut buf = [0u8; 8];
        source.read_at(at, &mut buf).unwrap();
        assert_eq!(&buf, b"12345678");
    }

    #[test]
    fn an_archive_with_a_long_comment_is_found_in_the_longer_tail() {
        // The end record sits before a comment longer than the first tail read.
        let mut bytes = zip64_archive(b"abcdefgh");
        let comment = vec![b'x'; 20_000];
        let n = bytes.len();
        bytes[n - 2..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
        bytes.extend(&comment);
        let source = MemorySource::new("commented.bin", bytes);
        assert!(read_archive(&source)
            .unwrap()
            .entries
            .contains_key("archive/data/0"));
    }
}
