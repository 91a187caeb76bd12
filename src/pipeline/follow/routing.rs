//! Which apply lane an output operation belongs to, and which lanes hold a source transaction
//! already (after a restart from the lanes' smallest applied LSN).
//!
//! Every operation on one output key goes to the lane of hash(output, key): the key's
//! operations stay in one lane, in commit order, whatever lane the source row's other outputs
//! go to. The hash is FNV-1a, written out here rather than taken from a hashing crate: a lane's
//! applied LSN says which of *its* keys it applied, so the assignment must not change between
//! two runs, nor between two versions of switchyard (or of a crate) across a restart.

use crate::pg::lsn::Lsn;

/// The lane of the operation on output `output` (plan-wide number) with key `key` (COPY text
/// fields of the key columns), among `lanes`.
pub(super) fn lane_of(output: usize, key: &[u8], lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in (output as u32).to_le_bytes().iter().chain(key) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % lanes as u64) as usize
}

/// The lanes' recorded positions, as a restart found them: which lanes already applied the
/// source transaction being read.
#[derive(Debug, Clone)]
pub(super) struct Positions {
    /// Per lane, the applied LSN its row records.
    applied: Vec<Lsn>,
}

impl Positions {
    pub(super) fn new(applied: Vec<Lsn>) -> Positions {
        Positions { applied }
    }

    /// How many lanes the positions are of (the key assignment they were applied under).
    pub(super) fn lanes(&self) -> usize {
        self.applied.len()
    }

    /// Where a restart streams from: every lane applied everything before it.
    pub(super) fn min(&self) -> Lsn {
        self.applied.iter().copied().min().unwrap_or_default()
    }

    /// Up to where some lane applied: until then, a transaction may be applied for some lanes
    /// and not others.
    pub(super) fn max(&self) -> Lsn {
        self.applied.iter().copied().max().unwrap_or_default()
    }

    /// Per lane, whether it applied the transaction whose commit is at `final_lsn` (its
    /// applied LSN is the end of a commit at or after it; see `Dispatch` for the rule).
    pub(super) fn applied_before(&self, final_lsn: Lsn) -> Vec<bool> {
        self.applied.iter().map(|a| final_lsn < *a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_always_lands_in_the_same_lane_and_keys_spread() {
        let lanes = 4;
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let key = format!("{i}\n");
            let lane = lane_of(2, key.as_bytes(), lanes);
            assert_eq!(lane, lane_of(2, key.as_bytes(), lanes));
            seen[lane] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn the_assignment_is_fixed_across_versions() {
        // A restart after an upgrade must find each key in the lane that applied it.
        assert_eq!(
            [
                lane_of(0, b"1\n", 4),
                lane_of(1, b"1\n", 4),
                lane_of(3, b"a5f0c1de-0000-4000-8000-000000000001\n", 4)
            ],
            FIXED
        );
    }

    /// FNV-1a 64 of the output number (4 bytes, little-endian) then the key, modulo 4, computed
    /// independently (in Python) and kept: a change here breaks restarts after an upgrade.
    const FIXED: [usize; 3] = [2, 3, 0];

    #[test]
    fn one_lane_takes_everything() {
        assert_eq!(lane_of(7, b"anything", 1), 0);
    }

    #[test]
    fn a_lane_skips_what_it_applied() {
        let p = Positions::new(vec![Lsn(100), Lsn(300)]);
        assert_eq!(p.applied_before(Lsn(200)), vec![false, true]);
        assert_eq!((p.min(), p.max()), (Lsn(100), Lsn(300)));
    }
}
