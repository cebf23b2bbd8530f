//! The floor: the disk itself, with no store around it.
//!
//! Each op is one frame (`u32` length with a tombstone bit, `u32` CRC32 of
//! the payload, the lock as compact MessagePack, or the id for a release):
//! the same bytes a minimal log would write. There is no index, no state and
//! no recovery logic, so these are bounds, not stores.
//!
//! - `Growing`: `write` + `fdatasync` per op, appending, so every sync also
//!   persists a new file size (an extra journal commit on ext4).
//! - `Prealloc`: `pwrite` + `fdatasync` per op into a file that was
//!   zero-filled and synced first (a ring of [`RING_BYTES`]).
//! - `Sparse`: the same into a file only pre-sized with `set_len` (a hole):
//!   each sync still allocates blocks, so it costs what a growing file does.
//! - `GroupCommit`: leader/follower over the preallocated ring: whoever finds
//!   no flush in progress takes everything queued, writes it with one
//!   `pwrite` and one `fdatasync`, and wakes the others. The concurrent floor.
//! - `Log`: a framed log decoded into a `Vec` at restore (W3 only).
//!
//! The serial modes call `write`/`fdatasync` directly on the runtime worker
//! (no hand-off at all); the group-commit leader uses `block_in_place`.

use crate::engine::{Caps, Peer, Restored, Store, unsupported};
use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::model::PersistedLock;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Size of the preallocated ring file.
pub const RING_BYTES: u64 = 64 << 20;
const TOMBSTONE: u32 = 1 << 31;
const FILE: &str = "raw.log";

/// The raw-disk peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raw {
    /// Append + fdatasync per op.
    Growing,
    /// pwrite + fdatasync per op into a preallocated file.
    Prealloc,
    /// pwrite + fdatasync per op into a file pre-sized with `set_len`.
    Sparse,
    /// Leader/follower group commit into a preallocated file.
    GroupCommit,
    /// A framed log read back into a `Vec` (restore only).
    Log,
}

/// Appends the frame of `payload` to `buf`.
fn frame(buf: &mut Vec<u8>, payload: &[u8], tombstone: bool) {
    let len = u32::try_from(payload.len()).expect("small payload");
    buf.extend_from_slice(&(len | if tombstone { TOMBSTONE } else { 0 }).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

fn put_frame(lock: &PersistedLock) -> Result<Vec<u8>> {
    let payload = rmp_serde::to_vec(lock)?;
    let mut buf = Vec::with_capacity(payload.len() + 8);
    frame(&mut buf, &payload, false);
    Ok(buf)
}

fn delete_frame(lock: &PersistedLock) -> Vec<u8> {
    let mut buf = Vec::with_capacity(lock.id.len() + 8);
    frame(&mut buf, lock.id.as_bytes(), true);
    buf
}

/// Decodes every put frame read from `input` (stopping at the end or at a
/// zero length, the unwritten part of a preallocated file); tombstones are
/// skipped.
pub fn decode_log(mut input: impl std::io::Read) -> Result<Vec<PersistedLock>> {
    let mut out = Vec::new();
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    let mut at = 0u64;
    loop {
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let word = u32::from_le_bytes(header[..4].try_into()?);
        let len = (word & !TOMBSTONE) as usize;
        if len == 0 {
            break;
        }
        let crc = u32::from_le_bytes(header[4..].try_into()?);
        payload.resize(len, 0);
        input.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Err(format!("raw: bad checksum at {at}").into());
        }
        if word & TOMBSTONE == 0 {
            out.push(rmp_serde::from_slice(&payload)?);
        }
        at += 8 + len as u64;
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Creates `path` zero-filled to [`RING_BYTES`] and synced, so later
/// fdatasyncs persist data only (or, `sparse`, only sized: a hole).
fn preallocate(path: &Path, sparse: bool) -> Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    if sparse {
        file.set_len(RING_BYTES)?;
    } else {
        let zeros = vec![0u8; 1 << 20];
        let mut writer = &file;
        for _ in 0..RING_BYTES / zeros.len() as u64 {
            writer.write_all(&zeros)?;
        }
    }
    file.sync_all()?;
    sync_dir(path.parent().ok_or("raw: no parent")?)?;
    Ok(file)
}

#[async_trait]
impl Peer for Raw {
    fn name(&self) -> &'static str {
        match self {
            Raw::Growing => "raw-growing",
            Raw::Prealloc => "raw-prealloc",
            Raw::Sparse => "raw-sparse",
            Raw::GroupCommit => "raw-group",
            Raw::Log => "raw-log",
        }
    }

    fn config(&self) -> String {
        match self {
            Raw::Growing => "write + fdatasync per op, appending to a growing file".into(),
            Raw::Prealloc => {
                format!("pwrite + fdatasync per op into a {} MiB zero-filled, synced file", RING_BYTES >> 20)
            }
            Raw::Sparse => format!(
                "pwrite + fdatasync per op into a {} MiB file pre-sized with set_len (sparse), synced",
                RING_BYTES >> 20
            ),
            Raw::GroupCommit => format!(
                "leader/follower group commit: one pwrite + one fdatasync per group, {} MiB zero-filled, synced file",
                RING_BYTES >> 20
            ),
            Raw::Log => {
                "framed log (length, CRC32, MessagePack record) streamed through a 1 MiB buffer and decoded into a Vec"
                    .into()
            }
        }
    }

    fn caps(&self) -> Caps {
        let none = Caps { serial: false, concurrent: false, restore: false, queries: false };
        match self {
            Raw::Growing | Raw::Prealloc | Raw::Sparse => Caps { serial: true, ..none },
            Raw::GroupCommit => Caps { concurrent: true, ..none },
            Raw::Log => Caps { restore: true, ..none },
        }
    }

    async fn open(&self, dir: &Path) -> Result<Arc<dyn Store>> {
        let path = dir.join(FILE);
        let file = match self {
            Raw::Growing | Raw::Log => {
                let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
                sync_dir(dir)?;
                file
            }
            Raw::Prealloc | Raw::GroupCommit => tokio::task::block_in_place(|| preallocate(&path, false))?,
            Raw::Sparse => tokio::task::block_in_place(|| preallocate(&path, true))?,
        };
        let (durable, _) = watch::channel(0);
        Ok(Arc::new(RawStore {
            mode: *self,
            path,
            file,
            inner: Mutex::new(Inner { pos: 0, queue: Vec::new(), queued: 0, leader: false, spare: Vec::new() }),
            durable,
            fsyncs: AtomicU64::new(0),
        }))
    }
}

struct RawStore {
    mode: Raw,
    path: PathBuf,
    file: File,
    inner: Mutex<Inner>,
    /// Group commit: the last ticket known durable.
    durable: watch::Sender<u64>,
    /// fdatasyncs done.
    fsyncs: AtomicU64,
}

struct Inner {
    /// Next write offset in the ring.
    pos: u64,
    /// Group commit: frames waiting for a leader.
    queue: Vec<u8>,
    /// Group commit: tickets handed out.
    queued: u64,
    /// Group commit: a flush is in progress.
    leader: bool,
    /// A drained buffer, reused.
    spare: Vec<u8>,
}

impl RawStore {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `len` bytes of the ring (wrapping to the start).
    fn claim(inner: &mut Inner, len: usize) -> u64 {
        if inner.pos + len as u64 > RING_BYTES {
            inner.pos = 0;
        }
        let at = inner.pos;
        inner.pos += len as u64;
        at
    }

    fn write_serial(&self, frame: &[u8]) -> Result<()> {
        let mut inner = self.inner();
        match self.mode {
            Raw::Growing | Raw::Log => (&self.file).write_all(frame)?,
            _ => {
                let at = Self::claim(&mut inner, frame.len());
                self.file.write_all_at(frame, at)?;
            }
        }
        self.file.sync_data()?;
        self.fsyncs.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn write_group(&self, frame: &[u8]) -> Result<()> {
        let mut durable = self.durable.subscribe();
        let ticket = {
            let mut inner = self.inner();
            inner.queue.extend_from_slice(frame);
            inner.queued += 1;
            inner.queued
        };
        loop {
            if *durable.borrow_and_update() >= ticket {
                return Ok(());
            }
            let batch = {
                let mut inner = self.inner();
                if inner.leader || inner.queue.is_empty() {
                    None
                } else {
                    inner.leader = true;
                    let spare = std::mem::take(&mut inner.spare);
                    let batch = std::mem::replace(&mut inner.queue, spare);
                    let at = Self::claim(&mut inner, batch.len());
                    Some((batch, at, inner.queued))
                }
            };
            match batch {
                Some((mut batch, at, upto)) => {
                    let written = tokio::task::block_in_place(|| {
                        self.file.write_all_at(&batch, at)?;
                        self.file.sync_data()?;
                        self.fsyncs.fetch_add(1, Relaxed);
                        Ok::<_, std::io::Error>(())
                    });
                    batch.clear();
                    {
                        let mut inner = self.inner();
                        inner.leader = false;
                        inner.spare = batch;
                    }
                    // A floor has no recovery story: an I/O error ends the run.
                    written?;
                    self.durable.send_modify(|d| *d = (*d).max(upto));
                }
                None => durable.changed().await?,
            }
        }
    }

    async fn write(&self, frame: &[u8]) -> Result<()> {
        match self.mode {
            Raw::GroupCommit => self.write_group(frame).await,
            _ => self.write_serial(frame),
        }
    }
}

#[async_trait]
impl Store for RawStore {
    async fn put(&self, lock: PersistedLock) -> Result<()> {
        self.write(&put_frame(&lock)?).await
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        self.write(&delete_frame(lock)).await
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        if self.mode != Raw::Log {
            return Err(unsupported(self.mode.name(), "bulk load"));
        }
        let mut buf = Vec::new();
        for lock in &locks {
            frame(&mut buf, &rmp_serde::to_vec(lock)?, false);
        }
        self.write_serial(&buf)
    }

    async fn by_client(&self, _client: &str) -> Result<Vec<PersistedLock>> {
        Err(unsupported(self.mode.name(), "queries"))
    }

    async fn by_file(&self, _file: &str) -> Result<Vec<PersistedLock>> {
        Err(unsupported(self.mode.name(), "queries"))
    }

    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        let file = File::open(&self.path)?;
        let locks = decode_log(std::io::BufReader::with_capacity(1 << 20, file))?;
        Ok(Restored { locks: locks.len() as u64, resident: Box::new(locks) })
    }

    async fn close(&self) -> Result<()> {
        self.file.sync_all()?;
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let (fsyncs, writes) = (self.fsyncs.load(Relaxed), self.inner().queued);
        let mut stats = serde_json::json!({ "fsyncs": fsyncs });
        if self.mode == Raw::GroupCommit && fsyncs > 0 {
            stats["mean_batch_size"] = (writes as f64 / fsyncs as f64).into();
        }
        Some(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Shape;

    #[test]
    fn frames_round_trip() {
        let data = Dataset::new(Shape::default());
        let mut log = Vec::new();
        for n in 0..10 {
            log.extend(put_frame(&data.lock(n)).unwrap());
        }
        log.extend(delete_frame(&data.lock(3)));
        log.extend([0u8; 64]);
        assert_eq!(decode_log(&log[..]).unwrap(), data.locks(0..10));
        assert_eq!(decode_log(&log[..log.len() - 64]).unwrap(), data.locks(0..10));
    }
}
