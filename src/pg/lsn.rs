//! Log sequence numbers: byte positions in the source's write-ahead log.
//!
//! Every hand-off in switchyard is stated as an LSN: the slot's consistent point that splits
//! backfill from follow, the commit end the applier has made durable, the position reported back
//! to the server so it can recycle WAL. A bare `u64` would let those mix with row counts; this
//! type keeps them apart and speaks PostgreSQL's `X/X` text form (`pg_lsn`), where the two halves
//! are the high and low 32 bits in upper-case hex without padding.
//!
//! <https://www.postgresql.org/docs/15/datatype-pg-lsn.html>

use std::error::Error;
use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, PgLsn, ToSql, Type};

/// A position in the write-ahead log, in bytes since the start of the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`: PostgreSQL's `InvalidXLogRecPtr`, sent for "no position" (e.g. Relation messages).
    pub const INVALID: Lsn = Lsn(0);

    /// Bytes of WAL from `earlier` to `self`, or `None` when `earlier` is ahead of `self`.
    pub fn bytes_since(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// Bytes of WAL from `earlier` to `self`, zero when `earlier` is ahead (for lag displays).
    pub fn saturating_bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Sub for Lsn {
    type Output = u64;

    /// Bytes between two positions. Panics in debug builds when `rhs` is ahead; use
    /// [`Lsn::bytes_since`] when the order is not known.
    fn sub(self, rhs: Lsn) -> u64 {
        self.0 - rhs.0
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Lsn {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Travels as a `pg_lsn` parameter (binary, through postgres-types' [`PgLsn`]), so SQL takes
/// it as it is instead of casting text.
impl ToSql for Lsn {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        PgLsn::from(self.0).to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <PgLsn as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// Reads a `pg_lsn` column or result as it is, without `::text` and parsing.
impl<'a> FromSql<'a> for Lsn {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Lsn, Box<dyn Error + Sync + Send>> {
        PgLsn::from_sql(ty, raw).map(|lsn| Lsn(u64::from(lsn)))
    }

    fn accepts(ty: &Type) -> bool {
        <PgLsn as FromSql>::accepts(ty)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hexadecimal numbers of up to 8 digits as in 16/B374D848"
)]
pub struct ParseLsnError {
    input: String,
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Lsn, ParseLsnError> {
        let error = || ParseLsnError {
            input: s.to_string(),
        };
        let (high, low) = s.split_once('/').ok_or_else(error)?;
        let half = |part: &str| {
            // from_str_radix accepts a leading '+', PostgreSQL does not.
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            u32::from_str_radix(part, 16).map_err(|_| error())
        };
        Ok(Lsn((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_postgres_form() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!("ffffffff/ffffffff".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "+1/2",
            "g/0",
            "123456789/0",
            " 1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn travels_as_binary_pg_lsn() {
        let lsn = Lsn(0x16_B374_D848);
        let mut out = BytesMut::new();
        lsn.to_sql_checked(&Type::PG_LSN, &mut out).unwrap();
        assert_eq!(&out[..], &0x16_B374_D848_u64.to_be_bytes());
        assert_eq!(Lsn::from_sql(&Type::PG_LSN, &out).unwrap(), lsn);
        assert!(lsn.to_sql_checked(&Type::TEXT, &mut out).is_err());
        assert!(!<Lsn as FromSql>::accepts(&Type::TEXT));
    }

    #[test]
    fn orders_and_measures_distance() {
        let a: Lsn = "0/FFFFFFFF".parse().unwrap();
        let b: Lsn = "1/0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b - a, 1);
        assert_eq!(b.bytes_since(a), Some(1));
        assert_eq!(a.bytes_since(b), None);
        assert_eq!(a.saturating_bytes_since(b), 0);
    }

    #[test]
    fn reads_the_binary_pg_lsn_form() {
        let raw = 0x16_B374_D848u64.to_be_bytes();
        assert_eq!(
            Lsn::from_sql(&Type::PG_LSN, &raw).unwrap(),
            "16/B374D848".parse().unwrap()
        );
        assert!(
            <Lsn as FromSql>::accepts(&Type::PG_LSN) && !<Lsn as FromSql>::accepts(&Type::TEXT)
        );
        assert!(Lsn::from_sql(&Type::PG_LSN, &raw[..4]).is_err());
    }
}
