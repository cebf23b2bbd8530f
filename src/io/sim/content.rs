//! A simulated file's bytes: a length and copy-on-write pages, so that a
//! crash image shares every page its pending operations do not touch and a
//! huge pre-sized file costs nothing until it is written.

use std::io;
use std::sync::Arc;

/// Size of a copy-on-write page of file content.
pub(super) const PAGE: usize = 4096;
/// Largest file the simulator holds (a bound on the page table).
pub const MAX_FILE_LEN: u64 = 1 << 32;

type PageRef = Arc<[u8; PAGE]>;

/// A file's bytes: a length and copy-on-write pages (`None`: all zeros).
/// Invariant: bytes at and beyond `len` in the last page are zero.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Content {
    pub(super) len: u64,
    pub(super) pages: Vec<Option<PageRef>>,
}

fn pages_for(len: u64) -> usize {
    len.div_ceil(PAGE as u64) as usize
}

impl Content {
    fn check_len(end: u64) -> io::Result<()> {
        if end > MAX_FILE_LEN {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "beyond the simulator's largest file"));
        }
        Ok(())
    }

    pub(super) fn write(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Self::check_len(end)?;
        if buf.is_empty() {
            return Ok(());
        }
        if end > self.len {
            self.pages.resize(pages_for(end), None);
            self.len = end;
        }
        let mut at = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let page = (at / PAGE as u64) as usize;
            let within = (at % PAGE as u64) as usize;
            let n = rest.len().min(PAGE - within);
            let (chunk, tail) = rest.split_at(n);
            let slot = &mut self.pages[page];
            if slot.is_some() || chunk.iter().any(|&b| b != 0) {
                let bytes = Arc::make_mut(slot.get_or_insert_with(|| Arc::new([0; PAGE])));
                bytes[within..within + n].copy_from_slice(chunk);
            }
            at += n as u64;
            rest = tail;
        }
        Ok(())
    }

    pub(super) fn set_len(&mut self, len: u64) -> io::Result<()> {
        Self::check_len(len)?;
        if len < self.len {
            self.pages.truncate(pages_for(len));
            let within = (len % PAGE as u64) as usize;
            if within != 0
                && let Some(Some(page)) = self.pages.last_mut()
            {
                Arc::make_mut(page)[within..].fill(0);
            }
        } else {
            self.pages.resize(pages_for(len), None);
        }
        self.len = len;
        Ok(())
    }

    pub(super) fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len as usize];
        for (i, page) in self.pages.iter().enumerate() {
            if let Some(page) = page {
                let start = i * PAGE;
                let end = (start + PAGE).min(out.len());
                out[start..end].copy_from_slice(&page[..end - start]);
            }
        }
        out
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allocated = self.pages.iter().filter(|p| p.is_some()).count();
        write!(f, "Content {{ len: {}, pages allocated: {allocated} }}", self.len)
    }
}
