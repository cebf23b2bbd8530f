//! The on-disk format of log segments: names, constants, header and frame
//! encoding. Pure: no I/O here, so every decoder can be fuzzed on its own.
//!
//! ```text
//! segment file  seg-<number:020>.wal
//! +---------- header, formats 2 to 4, 48 bytes ------+
//! | 0  magic "LWALSEG\0"          8 bytes            |
//! | 8  format version (u32 LE)    4  = 4 (or 2, 3)   |
//! | 12 crc32 of bytes 0..12, 16..48   4              |
//! | 16 segment number (u64 LE)    8                  |
//! | 24 salt (u64 LE)              8  random per file |
//! | 32 first LSN (u64 LE)         8                  |
//! | 40 epoch (u64 LE)             8  of the incarnation that created it |
//! +--------------------------------------------------+
//! | frame | frame | ... | zeros (pre-sized tail)     |
//!
//! header, format 1 (read, never written)
//! | 0 magic | 8 version = 1 | 12 zero | 16 number | 24 salt | 32 first LSN |
//! | 40 crc32 of bytes 0..40 | 44 zero |
//!
//! frame (starts 8-byte aligned; the same in every format)
//! | 0  payload length (u32 LE)    4  1..=MAX_PAYLOAD |
//! | 4  crc32 (u32 LE)             4  over salt, length, LSN, payload |
//! | 8  LSN (u64 LE)               8  previous LSN + 1 |
//! | 16 payload                    length bytes: MessagePack Vec<Command> |
//! | .. zero padding to a multiple of 8              |
//! ```
//!
//! Formats 2, 3 and 4 differ only in the payload: format 4 holds today's
//! [`Command`]; format 3 the same encoding without the durable-handle and
//! record operations (a format-3 payload that holds one is damage); formats
//! 1 and 2 the record model before record fidelity, which `wal::legacy`
//! reads and converts.
//!
//! From format 2 on, every version keeps the magic, the version and the
//! header checksum at offsets 0, 8 and 12, the checksum covering the rest of
//! the 48 bytes: a header of a newer version is then told apart from a
//! damaged one (its checksum verifies) and refused by its version.

use crate::state::Command;

/// Magic bytes at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LWALSEG\0";
/// The segment format version this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 4;
/// The oldest segment format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 48;
/// Size of a frame header (length, crc, LSN).
pub const FRAME_HEADER_LEN: usize = 16;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: usize = 8;
/// Largest payload of one frame. A length field above it is damage, never
/// an allocation.
pub const MAX_PAYLOAD: u32 = 32 << 20;
pub use crate::state::MAX_COUNTER;
/// Name of the writer lock file in the store directory.
pub const LOCK_FILE: &str = "LOCK";
/// Suffix of temporary files; never trusted, removed at open.
pub const TMP_SUFFIX: &str = ".tmp";

const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
// The largest transaction validation accepts is one command in a frame of
// its own: a one-byte array header and its encoding.
const _: () = assert!(crate::model::validate::MAX_TXN_ENCODED + 1 == MAX_PAYLOAD as usize);
const _: () = assert!(FRAME_HEADER_LEN.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(MAX_PAYLOAD as u64 + FRAME_HEADER_LEN as u64 + FRAME_ALIGN as u64 <= u32::MAX as u64);

/// File name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("seg-{number:020}.wal")
}

/// The segment number in a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n <= MAX_COUNTER)
}

/// The header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the segment in the log.
    pub number: u64,
    /// Random per-file value mixed into every frame checksum, so bytes left
    /// from another file never verify here.
    pub salt: u64,
    /// LSN of the first frame in the segment.
    pub first_lsn: u64,
    /// The epoch of the incarnation that created the segment: every epoch
    /// the store handed out is in the header of a segment it created
    /// (`None` in a format-1 header, which has no room for it).
    pub epoch: Option<u64>,
    /// The format version, which decides how payloads decode
    /// ([`OLDEST_FORMAT_VERSION`]..=[`FORMAT_VERSION`]).
    pub version: u32,
}

impl SegmentHeader {
    /// The header of a new segment this build writes.
    pub fn new(number: u64, salt: u64, first_lsn: u64, epoch: u64) -> Self {
        Self { number, salt, first_lsn, epoch: Some(epoch), version: FORMAT_VERSION }
    }
}

/// Why a header or frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    Short,
    /// The magic bytes are wrong.
    BadMagic,
    /// A format version this build does not read.
    Version(u32),
    /// A checksummed field holds a value outside its range (an LSN or a
    /// segment number of 0 or above [`MAX_COUNTER`]).
    OutOfRange(&'static str, u64),
    /// The checksum does not match.
    Checksum,
    /// A length field is zero or above its bound.
    BadLength(u32),
    /// The frame verifies but its LSN is not the one expected next.
    UnexpectedLsn(u64),
    /// The payload passed its checksum but does not decode.
    Payload(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short => f.write_str("truncated"),
            DecodeError::BadMagic => f.write_str("bad magic"),
            DecodeError::Version(v) => write!(f, "unknown format version {v}"),
            DecodeError::OutOfRange(field, v) => write!(f, "{field} {v} is outside 1..={MAX_COUNTER}"),
            DecodeError::Checksum => f.write_str("checksum mismatch"),
            DecodeError::BadLength(n) => write!(f, "bad length {n}"),
            DecodeError::UnexpectedLsn(lsn) => write!(f, "valid frame with out-of-sequence LSN {lsn}"),
            DecodeError::Payload(e) => write!(f, "undecodable payload: {e}"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn header_crc_v2(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..12]);
    h.update(&b[16..SEGMENT_HEADER_LEN]);
    h.finalize()
}

impl SegmentHeader {
    /// The 48 header bytes in the layout of `version` (only tests write a
    /// version before [`FORMAT_VERSION`], to check that it is still read;
    /// format 1 has no epoch).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[16..24].copy_from_slice(&self.number.to_le_bytes());
        b[24..32].copy_from_slice(&self.salt.to_le_bytes());
        b[32..40].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        if self.version == 1 {
            let crc = crc32fast::hash(&b[0..40]);
            b[40..44].copy_from_slice(&crc.to_le_bytes());
        } else {
            b[40..48].copy_from_slice(&self.epoch.unwrap_or(0).to_le_bytes());
            let crc = header_crc_v2(&b);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes and checks a header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b = bytes.get(..SEGMENT_HEADER_LEN).ok_or(DecodeError::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u32_at(b, 8);
        let verifies = match version {
            1 => crc32fast::hash(&b[0..40]) == u32_at(b, 40),
            _ => header_crc_v2(b) == u32_at(b, 12),
        };
        if !verifies {
            return Err(DecodeError::Checksum);
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(DecodeError::Version(version));
        }
        let in_range =
            |field, v: u64| if (1..=MAX_COUNTER).contains(&v) { Ok(v) } else { Err(DecodeError::OutOfRange(field, v)) };
        Ok(Self {
            number: in_range("segment number", u64_at(b, 16))?,
            salt: u64_at(b, 24),
            first_lsn: in_range("first LSN", u64_at(b, 32))?,
            epoch: if version == 1 { None } else { Some(in_range("epoch", u64_at(b, 40))?) },
            version,
        })
    }
}

/// Total bytes a frame with `payload_len` bytes of payload takes, padding
/// included.
pub fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len).next_multiple_of(FRAME_ALIGN)
}

fn frame_crc(salt: u64, len: u32, lsn: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one frame (header, payload, padding) to `out`. The payload is
/// written by `write_payload` directly into `out`, so no intermediate buffer
/// is needed.
pub fn append_frame(out: &mut Vec<u8>, salt: u64, lsn: u64, write_payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    debug_assert_eq!(start % FRAME_ALIGN, 0, "frames start aligned within a batch buffer");
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    write_payload(out);
    let len = u32::try_from(out.len() - start - FRAME_HEADER_LEN).expect("payload below 4 GiB");
    assert!(len > 0 && len <= MAX_PAYLOAD, "frame payload of {len} bytes is outside 1..={MAX_PAYLOAD}");
    let crc = frame_crc(salt, len, lsn, &out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&lsn.to_le_bytes());
    out.resize(start + frame_len(len as usize), 0);
}

/// Appends one command's MessagePack encoding. A payload is a MessagePack
/// array of commands: [`write_array_header`] followed by that many of these.
pub fn encode_command(out: &mut Vec<u8>, command: &Command) {
    rmp_serde::encode::write(out, command).expect("encoding into a Vec cannot fail");
}

/// Bytes of the MessagePack array header for `count` elements.
pub fn array_header_len(count: usize) -> usize {
    match count {
        0..16 => 1,
        16..=0xFFFF => 3,
        _ => 5,
    }
}

/// Appends a MessagePack array header for `count` elements.
pub fn write_array_header(out: &mut Vec<u8>, count: usize) {
    match count {
        0..16 => out.push(0x90 | count as u8),
        16..=0xFFFF => {
            out.push(0xDC);
            out.extend_from_slice(&(count as u16).to_be_bytes());
        }
        _ => {
            out.push(0xDD);
            out.extend_from_slice(&u32::try_from(count).expect("fewer than 2^32 commands").to_be_bytes());
        }
    }
}

/// Appends a whole payload: the array of `commands`.
pub fn encode_commands(out: &mut Vec<u8>, commands: &[&Command]) {
    write_array_header(out, commands.len());
    for command in commands {
        encode_command(out, command);
    }
}

/// A frame that decoded and verified.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Its LSN.
    pub lsn: u64,
    /// Its payload bytes.
    pub payload: &'a [u8],
    /// Bytes it occupies, padding included.
    pub len: usize,
}

/// Decodes and verifies the frame at the start of `bytes`; `lsn_ok` says
/// which LSNs may stand there (the next expected one when replaying, a range
/// when scanning for valid frames after damage).
pub fn decode_frame(bytes: &[u8], salt: u64, lsn_ok: impl Fn(u64) -> bool) -> Result<Frame<'_>, DecodeError> {
    let h = bytes.get(..FRAME_HEADER_LEN).ok_or(DecodeError::Short)?;
    let len = u32_at(h, 0);
    if len == 0 || len > MAX_PAYLOAD {
        return Err(DecodeError::BadLength(len));
    }
    let payload = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len as usize).ok_or(DecodeError::Short)?;
    let lsn = u64_at(h, 8);
    if frame_crc(salt, len, lsn, payload) != u32_at(h, 4) {
        return Err(DecodeError::Checksum);
    }
    // Padding is not under the checksum, so it must be zero: then every
    // byte of a frame is checked.
    let total = frame_len(len as usize);
    let padding = bytes.get(FRAME_HEADER_LEN + len as usize..total).ok_or(DecodeError::Short)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(DecodeError::Checksum);
    }
    if !lsn_ok(lsn) {
        return Err(DecodeError::UnexpectedLsn(lsn));
    }
    Ok(Frame { lsn, payload, len: total })
}

/// Whether a valid frame with an LSN in `lsns` starts at `bytes`. Checks the
/// length bound and the LSN range before the checksum, so scanning garbage
/// position by position costs no checksum per position.
pub fn is_valid_frame_in(bytes: &[u8], salt: u64, lsns: std::ops::RangeInclusive<u64>) -> Option<usize> {
    let h = bytes.get(..FRAME_HEADER_LEN)?;
    if !lsns.contains(&u64_at(h, 8)) {
        return None;
    }
    decode_frame(bytes, salt, |lsn| lsns.contains(&lsn)).ok().map(|f| f.len)
}

/// The payload of a verified frame, with the format of its segment.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The payload bytes.
    pub bytes: &'a [u8],
    /// The segment's format version.
    pub version: u32,
}

impl Payload<'_> {
    /// Decodes the payload into its commands.
    pub fn commands(&self) -> Result<Vec<Command>, DecodeError> {
        decode_commands(self.bytes, self.version)
    }
}

/// Decodes a verified payload of a segment of format `version` into its
/// commands.
pub fn decode_commands(payload: &[u8], version: u32) -> Result<Vec<Command>, DecodeError> {
    if version < 3 {
        return super::legacy::decode_commands(payload).map_err(DecodeError::Payload);
    }
    let commands: Vec<Command> = rmp_serde::from_slice(payload).map_err(|e| DecodeError::Payload(e.to_string()))?;
    if version == 3
        && let Some(op) = commands.iter().flat_map(Command::ops).find(|op| !op.in_format_3())
    {
        return Err(DecodeError::Payload(format!("{} is not an operation of format 3", op.name())));
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;

    #[test]
    fn header_round_trips_and_every_flipped_bit_is_caught() {
        for (epoch, version) in [(Some(3), 4), (Some(3), 3), (Some(3), 2), (None, 1)] {
            let h = SegmentHeader { number: 7, salt: 0xDEAD_BEEF_0123_4567, first_lsn: 99, epoch, version };
            let bytes = h.encode();
            assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
            // Format 1 leaves bytes 44..48 outside its checksum (reserved).
            let covered = if epoch.is_some() { SEGMENT_HEADER_LEN } else { 44 };
            for bit in 0..covered * 8 {
                let mut b = bytes;
                b[bit / 8] ^= 1 << (bit % 8);
                assert!(SegmentHeader::decode(&b).is_err(), "bit {bit} flipped undetected ({epoch:?})");
            }
            assert_eq!(SegmentHeader::decode(&bytes[..47]), Err(DecodeError::Short));
        }
    }

    #[test]
    fn the_format_4_header_is_laid_out_as_specified() {
        let b = SegmentHeader::new(0x0102, 0x0A0B, 0x0C0D, 0x0E0F).encode();
        assert_eq!(&b[0..8], b"LWALSEG\0");
        assert_eq!(u32_at(&b, 8), 4);
        assert_eq!(u32_at(&b, 12), header_crc_v2(&b));
        assert_eq!((u64_at(&b, 16), u64_at(&b, 24), u64_at(&b, 32), u64_at(&b, 40)), (0x0102, 0x0A0B, 0x0C0D, 0x0E0F));
    }

    /// A newer version's header verifies under the format-2 rule and is
    /// refused by its version; a flipped version byte fails the checksum
    /// (damage, not a version).
    #[test]
    fn unknown_version_is_named_and_a_flipped_version_is_damage() {
        let mut b = SegmentHeader::new(1, 1, 1, 1).encode();
        b[8..12].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Err(DecodeError::Checksum));
        let crc = header_crc_v2(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Err(DecodeError::Version(5)));
        b[8..12].copy_from_slice(&0u32.to_le_bytes());
        let crc = header_crc_v2(&b);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Err(DecodeError::Version(0)));
    }

    #[test]
    fn an_epoch_out_of_range_is_damage() {
        for epoch in [0, MAX_COUNTER + 1] {
            let b = SegmentHeader::new(1, 1, 1, epoch).encode();
            assert_eq!(SegmentHeader::decode(&b), Err(DecodeError::OutOfRange("epoch", epoch)));
        }
    }

    #[test]
    fn frame_round_trips_and_every_flipped_bit_is_caught() {
        let cmd = Command::Txn(vec![Op::DeleteLock { id: "abc".into() }]);
        let mut buf = Vec::new();
        append_frame(&mut buf, 42, 5, |out| encode_commands(out, &[&cmd]));
        assert_eq!(buf.len() % FRAME_ALIGN, 0);
        let frame = decode_frame(&buf, 42, |lsn| lsn == 5).unwrap();
        assert_eq!(frame.len, buf.len());
        assert_eq!(decode_commands(frame.payload, FORMAT_VERSION).unwrap(), vec![cmd]);
        assert!(decode_frame(&buf, 43, |lsn| lsn == 5).is_err(), "another file's salt must not verify");
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&b, 42, |lsn| lsn == 5).is_err(), "bit {bit} flipped undetected");
        }
        for cut in 0..buf.len() {
            assert!(decode_frame(&buf[..cut], 42, |lsn| lsn == 5).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hand_written_array_headers_decode_as_messagepack_arrays() {
        for n in [0usize, 1, 15, 16, 17, 0xFFFF, 0x10000] {
            let cmd = Command::CleanShutdown;
            let cmds = vec![&cmd; n];
            let mut out = Vec::new();
            encode_commands(&mut out, &cmds);
            let owned: Vec<Command> = vec![cmd; n];
            assert_eq!(out, rmp_serde::to_vec(&owned).unwrap(), "n = {n}");
            assert_eq!(out.len() - n * rmp_serde::to_vec(&Command::CleanShutdown).unwrap().len(), array_header_len(n));
            assert_eq!(decode_commands(&out, FORMAT_VERSION).unwrap().len(), n);
        }
    }

    /// A format-3 payload decodes as format 4 (the operations it holds kept
    /// their encoding); a handle or record operation in a format-3 segment
    /// is damage, never a write the format could not hold.
    #[test]
    fn format_3_payloads_decode_and_refuse_newer_operations() {
        let lock = crate::testing::sample::byte_range("l", "s", "f", "o", "c");
        let old = Command::Txn(vec![Op::PutLock(lock), Op::DeleteLock { id: "l".into() }]);
        let mut bytes = Vec::new();
        encode_commands(&mut bytes, &[&old, &Command::CleanShutdown]);
        assert_eq!(decode_commands(&bytes, 3).unwrap(), vec![old.clone(), Command::CleanShutdown]);
        let new = Command::Txn(vec![Op::DeleteRecord { space: "dir".into(), key: b"k".to_vec() }]);
        let mut bytes = Vec::new();
        encode_commands(&mut bytes, &[&old, &new]);
        assert_eq!(decode_commands(&bytes, 4).unwrap(), vec![old, new]);
        match decode_commands(&bytes, 3) {
            Err(DecodeError::Payload(reason)) => assert!(reason.contains("DeleteRecord"), "{reason}"),
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    /// The largest transaction validation accepts fits one frame: any mix
    /// of `MAX_TXN_OPS` operations of the largest size of each kind, up to
    /// the record and handle byte limit, either is accepted and encodes to
    /// at most a frame's payload, or is refused as too large; never a
    /// payload `append_frame` would refuse.
    ///
    /// Regression (review of issue 18): 4,096 NSM client records with every
    /// field at its limit passed validation and encoded to 33,845,257
    /// bytes, and the writer thread panicked on it.
    #[test]
    fn no_valid_transaction_exceeds_a_frame() {
        use crate::model::validate::{MAX_TXN_ENCODED, MAX_TXN_OPS};
        let [lock, client, handle, swap] = <[Op; 4]>::try_from(crate::testing::sample::largest_ops()).unwrap();
        // The count is the encoding (checked on a short transaction).
        let few = vec![lock.clone(), client.clone(), handle.clone(), swap.clone()];
        let mut payload = Vec::new();
        encode_commands(&mut payload, &[&Command::Txn(few.clone())]);
        assert_eq!(payload.len(), 1 + crate::op::encoded_len(&few));
        let (mut accepted, mut refused) = (0, 0);
        // (heavy op, how many, the op filling up to MAX_TXN_OPS)
        let mixes = [(&lock, 0, &lock), (&client, 0, &client), (&swap, 15, &lock), (&handle, 290, &lock)];
        for (heavy, k, light) in mixes.into_iter().chain([(&swap, 15, &client), (&handle, 290, &client)]) {
            let mut ops = vec![heavy.clone(); k];
            ops.resize(MAX_TXN_OPS, light.clone());
            let len = 1 + crate::op::encoded_len(&ops);
            match crate::op::validate_batch(&ops) {
                Ok(()) => {
                    accepted += 1;
                    assert!(len <= MAX_PAYLOAD as usize, "{k} x {} + {}: {len} bytes", heavy.name(), light.name());
                }
                Err(crate::Error::InvalidInput { field: "ops", reason }) => {
                    refused += 1;
                    assert!(len > MAX_TXN_ENCODED + 1, "refused a transaction that fits: {reason}");
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(accepted > 0 && refused > 0, "{accepted} accepted, {refused} refused");
    }

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(parse_segment_name(&segment_name(12)), Some(12));
        assert_eq!(parse_segment_name(&segment_name(MAX_COUNTER)), Some(MAX_COUNTER));
        // Above the largest segment number: a look-alike (open refuses it
        // with `Corruption`), never a number that `+ 1` overflows.
        assert_eq!(parse_segment_name(&segment_name(MAX_COUNTER + 1)), None);
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), None);
        for bad in ["seg-1.wal", "seg-0000000000000000000x.wal", "seg-00000000000000000001.wal.tmp", "x"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
