//! The exact `u64` codec for `numeric(20,0)` columns: PostgreSQL's binary
//! `numeric` format, so every value up to 2^64-1 round-trips without text
//! and without another crate.

use bytes::{BufMut, BytesMut};
use std::error::Error as StdError;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn StdError + Sync + Send>;

/// A `u64` as PostgreSQL `numeric`, in the binary wire format: exact over
/// the whole range, so `2^64-1` is stored as `18446744073709551615`.
///
/// The format (PostgreSQL's `numeric_send`): `ndigits`, `weight`, `sign`,
/// `dscale` as 16-bit big-endian integers, then `ndigits` base-10000 digits,
/// most significant first; the value is `sum(digit[i] * 10000^(weight - i))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PgU64(pub(crate) u64);

const NUMERIC_POS: u16 = 0x0000;
const NBASE: u64 = 10_000;

impl PgU64 {
    /// The binary `numeric` encoding of the value.
    pub(crate) fn encode(self, out: &mut impl BufMut) {
        let mut digits = [0u16; 5]; // 10000^5 > 2^64
        let mut n = 0;
        let mut v = self.0;
        while v > 0 {
            digits[n] = (v % NBASE) as u16;
            v /= NBASE;
            n += 1;
        }
        digits[..n].reverse();
        let weight = n as i16 - 1;
        // Trailing zero digits are implied by the weight.
        while n > 0 && digits[n - 1] == 0 {
            n -= 1;
        }
        out.put_i16(n as i16);
        out.put_i16(if n == 0 { 0 } else { weight });
        out.put_u16(NUMERIC_POS);
        out.put_u16(0); // display scale: an integer
        for d in &digits[..n] {
            out.put_u16(*d);
        }
    }

    /// Decodes a binary `numeric`; refuses negative, non-integer, NaN,
    /// infinite and out-of-range values instead of rounding or wrapping.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, String> {
        let word = |i: usize| -> Result<u16, String> {
            raw.get(2 * i..2 * i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| format!("numeric value truncated at byte {}", 2 * i))
        };
        let ndigits = word(0)? as i16;
        let weight = word(1)? as i16;
        let sign = word(2)?;
        if ndigits < 0 {
            return Err(format!("numeric value with {ndigits} digits"));
        }
        let ndigits = ndigits as usize;
        if raw.len() != 8 + 2 * ndigits {
            return Err(format!("numeric value of {} bytes for {ndigits} digits", raw.len()));
        }
        if sign != NUMERIC_POS {
            return Err(match sign {
                0x4000 => "negative numeric value where an unsigned 64-bit integer belongs".to_owned(),
                other => format!("numeric special value (sign word {other:#06x}) where an integer belongs"),
            });
        }
        let mut value: u64 = 0;
        // Positions weight, weight-1, ..., 0 are the integer part; digits
        // beyond the stored ones are zero; digits below position 0 must be 0.
        for i in 0..ndigits.max((weight.max(-1) + 1) as usize) {
            let digit = if i < ndigits { word(4 + i)? } else { 0 };
            if digit as u64 >= NBASE {
                return Err(format!("numeric digit {digit} out of range"));
            }
            let position = weight as i32 - i as i32;
            if position < 0 {
                if digit != 0 {
                    return Err("numeric value has a fractional part where an integer belongs".to_owned());
                }
                continue;
            }
            value = value
                .checked_mul(NBASE)
                .and_then(|v| v.checked_add(digit as u64))
                .ok_or_else(|| "numeric value above 2^64-1".to_owned())?;
        }
        Ok(PgU64(value))
    }
}

impl ToSql for PgU64 {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.encode(out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgU64 {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        PgU64::decode(raw).map_err(Into::into)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: u64) -> Vec<u8> {
        let mut out = BytesMut::new();
        PgU64(v).encode(&mut out);
        out.to_vec()
    }

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_i16(ndigits);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(dscale);
        for d in digits {
            out.put_u16(*d);
        }
        out.to_vec()
    }

    #[test]
    fn numeric_encoding_matches_postgres_normal_form() {
        // What numeric_send produces for these values.
        assert_eq!(encoded(0), numeric(0, 0, 0, 0, &[]));
        assert_eq!(encoded(7), numeric(1, 0, 0, 0, &[7]));
        assert_eq!(encoded(10_000), numeric(1, 1, 0, 0, &[1]));
        assert_eq!(encoded(100_020_000), numeric(2, 2, 0, 0, &[1, 2]));
        assert_eq!(encoded(u64::MAX), numeric(5, 4, 0, 0, &[1844, 6744, 737, 955, 1615]));
    }

    #[test]
    fn numeric_round_trips_every_magnitude() {
        let mut values = vec![0, 1, 9_999, 10_000, 10_001, u32::MAX as u64, 1 << 63, u64::MAX - 1, u64::MAX];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((0..20).map(|e| 10u64.pow(e)));
        values.extend((1..20).map(|e| 10u64.pow(e) - 1));
        // A deterministic spread over the whole range.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x);
        }
        for v in values {
            assert_eq!(PgU64::decode(&encoded(v)), Ok(PgU64(v)), "{v}");
        }
    }

    #[test]
    fn numeric_decoding_accepts_other_valid_forms_of_integers() {
        // Untrimmed trailing zeros, a zero fraction digit, a display scale.
        assert_eq!(PgU64::decode(&numeric(2, 1, 0, 0, &[5, 0])), Ok(PgU64(50_000)));
        assert_eq!(PgU64::decode(&numeric(2, 0, 0, 2, &[5, 0])), Ok(PgU64(5)));
        assert_eq!(PgU64::decode(&numeric(0, 3, 0, 0, &[])), Ok(PgU64(0)));
    }

    #[test]
    fn numeric_decoding_refuses_what_is_not_a_u64() {
        let refused = [
            (numeric(1, 0, 0x4000, 0, &[5]), "negative"),
            (numeric(0, 0, 0xC000, 0, &[]), "special"),
            (numeric(1, -1, 0, 4, &[5000]), "fractional"),
            (numeric(5, 4, 0, 0, &[1844, 6744, 737, 955, 1616]), "above 2^64-1"),
            (numeric(1, 5, 0, 0, &[1]), "above 2^64-1"),
            (numeric(1, 0, 0, 0, &[10_000]), "digit"),
            (numeric(2, 1, 0, 0, &[1]), "bytes"),
            (vec![0, 1], "truncated"),
        ];
        for (raw, why) in refused {
            let err = PgU64::decode(&raw).expect_err(why);
            assert!(err.contains(why), "{err:?} should mention {why:?}");
        }
    }
}
