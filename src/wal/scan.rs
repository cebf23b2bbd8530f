//! Scanning a segment's bytes: which frames are valid, where the log ends,
//! and whether a bad region is a torn tail or corruption. Pure: takes bytes,
//! does no I/O, so replay, `verify`, `dump` and the fuzzers share it.
//!
//! The rules (DESIGN.md, "Opening and recovery rules"):
//! - after the last valid frame, a segment may hold only zeros (the pre-sized
//!   tail): that is a clean end;
//! - a bad region in the newest segment with no valid frame after it is the
//!   write that was in flight at a crash: a torn tail;
//! - a bad region anywhere else, or one followed by a valid frame, is
//!   corruption;
//! - a newest segment whose header is unreadable and that holds nothing but
//!   zeros after it is a segment whose creation was interrupted.

use super::format::{
    DecodeError, FORMAT_VERSION, FRAME_ALIGN, FRAME_HEADER_LEN, Payload, SEGMENT_HEADER_LEN, SegmentHeader,
    decode_frame, is_valid_frame_in,
};

/// How a segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// After the last valid frame: end of file or zeros only.
    Clean,
    /// A torn tail: bytes from `offset` on are an incomplete write with no
    /// valid frame after it (only possible in the newest segment).
    Torn {
        /// Where the torn write starts (the end of the valid log).
        offset: u64,
    },
    /// The header never became valid (creation interrupted); no frames.
    Incomplete,
}

/// What scanning one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The header, unless the segment is [`SegmentEnd::Incomplete`].
    pub header: Option<SegmentHeader>,
    /// Number of valid frames.
    pub frames: u64,
    /// LSN of the last valid frame (`first_lsn - 1` when none).
    pub last_lsn: u64,
    /// Byte offset just past the last valid frame.
    pub valid_end: u64,
    /// How it ends.
    pub end: SegmentEnd,
}

/// Damage found by a scan: the first bad byte and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first bad header or frame.
    pub offset: u64,
    /// Why it is bad.
    pub error: DecodeError,
    /// How many valid frames follow the damage in this segment.
    pub valid_after: u64,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {} valid record(s) follow it", self.error, self.valid_after)
    }
}

/// Whether every byte is zero. Segments are pre-sized, so this runs over
/// megabytes of tail: OR-folding fixed-size chunks lets the compiler
/// vectorise it, where a byte-by-byte `all` does not.
fn all_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0) && chunks.remainder().iter().all(|&b| b == 0)
}

/// Visits the valid frames (of this segment's salt, with LSNs above
/// `last_lsn`) that start after `from`, at frame alignment, as (offset, LSN,
/// payload), and returns how many there are: what survives after damage.
pub fn visit_frames_after(
    bytes: &[u8],
    from: usize,
    salt: u64,
    last_lsn: u64,
    version: u32,
    mut visit: impl FnMut(u64, u64, Payload<'_>),
) -> u64 {
    // A frame takes at least FRAME_HEADER_LEN + 1 bytes, so no valid frame
    // can carry an LSN further out than this.
    let max_lsn = last_lsn.saturating_add((bytes.len() / FRAME_HEADER_LEN) as u64 + 1);
    let mut count = 0;
    let mut at = from.next_multiple_of(FRAME_ALIGN);
    while at + FRAME_HEADER_LEN <= bytes.len() {
        match is_valid_frame_in(&bytes[at..], salt, last_lsn + 1..=max_lsn) {
            Some(len) => {
                let frame = decode_frame(&bytes[at..], salt, |_| true).expect("verified just now");
                visit(at as u64, frame.lsn, Payload { bytes: frame.payload, version });
                count += 1;
                at += len;
            }
            None => at += FRAME_ALIGN,
        }
    }
    count
}

fn valid_frames_after(bytes: &[u8], from: usize, salt: u64, last_lsn: u64) -> u64 {
    visit_frames_after(bytes, from, salt, last_lsn, FORMAT_VERSION, |_, _, _| {})
}

/// Scans a segment. `expected_first_lsn` is the LSN the segment must start
/// with (`None` for the oldest segment on disk); `newest` whether it is the
/// last segment of the log. Each valid frame is passed to `on_frame` as
/// (offset, LSN, payload); an error from `on_frame` stops the scan.
pub fn scan_segment<E>(
    bytes: &[u8],
    expected_first_lsn: Option<u64>,
    newest: bool,
    mut on_frame: impl FnMut(u64, u64, Payload<'_>) -> Result<(), E>,
) -> Result<Result<SegmentScan, Damage>, E> {
    let header = match SegmentHeader::decode(bytes) {
        Ok(h) => h,
        Err(error) => {
            let rest = bytes.get(SEGMENT_HEADER_LEN..).unwrap_or(&[]);
            if newest && all_zero(rest) && !matches!(error, DecodeError::Version(_)) {
                return Ok(Ok(SegmentScan {
                    header: None,
                    frames: 0,
                    last_lsn: expected_first_lsn.unwrap_or(1).saturating_sub(1),
                    valid_end: 0,
                    end: SegmentEnd::Incomplete,
                }));
            }
            return Ok(Err(Damage { offset: 0, error, valid_after: 0 }));
        }
    };
    if let Some(expected) = expected_first_lsn
        && header.first_lsn != expected
    {
        return Ok(Err(Damage { offset: 32, error: DecodeError::UnexpectedLsn(header.first_lsn), valid_after: 0 }));
    }
    let mut at = SEGMENT_HEADER_LEN;
    let mut next_lsn = header.first_lsn;
    let mut frames = 0;
    let end = loop {
        if at >= bytes.len() {
            break SegmentEnd::Clean;
        }
        match decode_frame(&bytes[at..], header.salt, |lsn| lsn == next_lsn) {
            Ok(frame) => {
                on_frame(at as u64, frame.lsn, Payload { bytes: frame.payload, version: header.version })?;
                frames += 1;
                next_lsn += 1;
                at += frame.len;
            }
            Err(error) => {
                if all_zero(&bytes[at..]) {
                    break SegmentEnd::Clean;
                }
                let valid_after = valid_frames_after(bytes, at + FRAME_ALIGN, header.salt, next_lsn - 1);
                let torn = newest && valid_after == 0 && !matches!(error, DecodeError::UnexpectedLsn(_));
                if torn {
                    break SegmentEnd::Torn { offset: at as u64 };
                }
                return Ok(Err(Damage { offset: at as u64, error, valid_after }));
            }
        }
    };
    Ok(Ok(SegmentScan {
        header: Some(header),
        frames,
        last_lsn: next_lsn - 1,
        valid_end: at.min(bytes.len()) as u64,
        end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::append_frame;

    const SALT: u64 = 0x5A17;

    /// A segment with `n` frames (LSN 1..=n) and `zeros` bytes of pre-sized tail.
    fn segment(n: u64, zeros: usize) -> (Vec<u8>, Vec<usize>) {
        let mut b = SegmentHeader::new(1, SALT, 1, 1).encode().to_vec();
        let mut starts = Vec::new();
        for lsn in 1..=n {
            starts.push(b.len());
            append_frame(&mut b, SALT, lsn, |out| out.extend_from_slice(&[lsn as u8; 37]));
        }
        b.resize(b.len() + zeros, 0);
        (b, starts)
    }

    fn scan(bytes: &[u8], newest: bool) -> Result<SegmentScan, Damage> {
        scan_segment::<()>(bytes, Some(1), newest, |_, _, _| Ok(())).unwrap()
    }

    #[test]
    fn all_zero_sees_a_single_set_bit_anywhere() {
        let zeros = vec![0u8; 1000];
        assert!(all_zero(&zeros) && all_zero(&[]));
        for at in 0..zeros.len() {
            let mut b = zeros.clone();
            b[at] = 0x40;
            assert!(!all_zero(&b), "byte {at}");
        }
    }

    #[test]
    fn clean_segments_end_at_eof_or_zeros() {
        for zeros in [0, 8, 4096] {
            let (b, _) = segment(5, zeros);
            let s = scan(&b, false).unwrap();
            assert_eq!((s.frames, s.last_lsn, s.end), (5, 5, SegmentEnd::Clean));
        }
    }

    #[test]
    fn a_torn_last_frame_at_every_byte_is_a_torn_tail_only_in_the_newest_segment() {
        let (full, starts) = segment(4, 0);
        let last = *starts.last().unwrap();
        for cut in last + 1..full.len() {
            for fill in [0u8, 0xFF] {
                let mut b = full[..cut].to_vec();
                b.resize(full.len() + 64, fill);
                if fill == 0 && all_zero(&full[cut..]) {
                    continue; // zeros over zero padding: nothing was torn
                }
                let s = scan(&b, true).unwrap();
                assert_eq!((s.frames, s.end), (3, SegmentEnd::Torn { offset: last as u64 }), "cut {cut}");
                let damage = scan(&b, false).unwrap_err();
                assert_eq!(damage.offset, last as u64);
            }
        }
    }

    #[test]
    fn damage_followed_by_a_valid_frame_is_corruption_even_in_the_newest_segment() {
        let (mut b, starts) = segment(6, 128);
        b[starts[2] + FRAME_HEADER_LEN + 3] ^= 0x10;
        let damage = scan(&b, true).unwrap_err();
        assert_eq!(damage.offset, starts[2] as u64);
        assert_eq!(damage.valid_after, 3);
        assert_eq!(damage.error, DecodeError::Checksum);
    }

    #[test]
    fn an_interrupted_creation_is_recognised_only_when_nothing_follows() {
        let zeros = vec![0u8; 4096];
        assert_eq!(scan(&zeros, true).unwrap().end, SegmentEnd::Incomplete);
        assert_eq!(scan(&zeros[..10], true).unwrap().end, SegmentEnd::Incomplete);
        assert!(scan(&zeros, false).is_err());
        let (mut b, _) = segment(2, 0);
        b[3] ^= 1;
        assert_eq!(scan(&b, true).unwrap_err().offset, 0);
    }

    /// Regression (issue 15, item 4): a checksummed header with first LSN 0
    /// (or a segment number out of range) panicked `open` and `verify` at
    /// `next_lsn - 1`; it is damage at the header.
    #[test]
    fn an_out_of_range_header_is_damage_not_a_panic() {
        for (number, first_lsn) in [(1, 0), (0, 1), (1, u64::MAX), (u64::MAX, 1)] {
            let mut b = SegmentHeader::new(number, SALT, first_lsn, 1).encode().to_vec();
            append_frame(&mut b, SALT, first_lsn, |out| out.push(1));
            for newest in [false, true] {
                let damage = scan_segment::<()>(&b, None, newest, |_, _, _| Ok(())).unwrap().unwrap_err();
                assert_eq!(damage.offset, 0, "number {number}, first LSN {first_lsn}");
                assert!(matches!(damage.error, DecodeError::OutOfRange(..)), "{:?}", damage.error);
            }
        }
    }

    #[test]
    fn an_lsn_gap_is_corruption() {
        let mut b = SegmentHeader::new(1, SALT, 1, 1).encode().to_vec();
        append_frame(&mut b, SALT, 1, |out| out.push(1));
        append_frame(&mut b, SALT, 3, |out| out.push(3));
        let damage = scan(&b, true).unwrap_err();
        assert_eq!(damage.error, DecodeError::UnexpectedLsn(3));
        assert!(scan_segment::<()>(&b, Some(2), true, |_, _, _| Ok(())).unwrap().is_err());
    }
}
