//! A byte source over bytes in memory: for fuzzing the header reader and for tests that build
//! hostile files without touching the disk.

use super::bytes::{ByteSource, ReadCounter, ReadStats};
use crate::error::{Error, Result};

/// Bytes in memory, read like a file.
pub struct MemorySource {
    name: String,
    data: Vec<u8>,
    counter: ReadCounter,
}

impl MemorySource {
    /// A source called `name` in messages holding `data`.
    pub fn new(name: impl Into<String>, data: Vec<u8>) -> MemorySource {
        MemorySource {
            name: name.into(),
            data,
            counter: ReadCounter::default(),
        }
    }
}

impl ByteSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|r| r.end <= self.data.len())
            .ok_or_else(|| {
                Error::header(
                    &self.name,
                    format!(
                        "file is truncated: {} bytes wanted at offset {offset}, the file has {}",
                        buf.len(),
                        self.data.len()
                    ),
                )
            })?;
        buf.copy_from_slice(&self.data[range]);
        self.counter.record(buf.len());
        Ok(())
    }

    fn stats(&self) -> ReadStats {
        self.counter.stats()
    }
}
