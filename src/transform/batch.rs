//! A batch of COPY lines through a source's transform, as one unit of work for the rayon pool.
//!
//! Each output row remembers where it ends in its buffer and which source line it came from,
//! so the sink can split a batch the target refused and dead-letter exactly the bad rows.

use crate::pg::copy_text::lines;
use crate::transform::program::SourcePlan;

use super::memo::Memo;
use super::row::{describe, transform_copy_line, Env, Rejected, RowScratch};

/// The rows one output received from a batch, as COPY text.
#[derive(Debug, Default)]
pub struct OutputRows {
    pub data: Vec<u8>,
    /// End offset in `data` of each row.
    pub row_ends: Vec<u32>,
    /// Start offset, in the batch's source text, of the line each row came from.
    pub origins: Vec<u32>,
}

impl OutputRows {
    pub fn len(&self) -> usize {
        self.row_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_ends.is_empty()
    }

    /// The COPY text of rows `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> &[u8] {
        let start = if range.start == 0 {
            0
        } else {
            self.row_ends[range.start - 1] as usize
        };
        let end = if range.end == 0 {
            0
        } else {
            self.row_ends[range.end - 1] as usize
        };
        &self.data[start..end]
    }
}

/// The result of transforming one batch.
#[derive(Debug, Default)]
pub struct TransformedBatch {
    /// One per output of the source, in plan order.
    pub outputs: Vec<OutputRows>,
    pub rejected: Vec<Rejected>,
    pub source_rows: u64,
}

/// Transforms every line of `text` (whole COPY lines of the plan's read columns).
pub fn transform_batch<'r>(
    source: &'r SourcePlan,
    env: &Env<'r>,
    text: &'r [u8],
) -> TransformedBatch {
    let mut buffers: Vec<Vec<u8>> = (0..source.outputs.len())
        .map(|_| Vec::with_capacity(text.len()))
        .collect();
    let mut outputs: Vec<OutputRows> = (0..source.outputs.len())
        .map(|_| OutputRows::default())
        .collect();
    let mut rejected = Vec::new();
    let mut source_rows = 0;
    let mut memo = Memo::new(source.derived.len());
    let mut scratch = RowScratch::default();
    let mut before: Vec<usize> = Vec::with_capacity(buffers.len());
    for line in lines(text) {
        source_rows += 1;
        let origin = (line.as_ptr() as usize - text.as_ptr() as usize) as u32;
        before.clear();
        before.extend(buffers.iter().map(Vec::len));
        match transform_copy_line(source, env, line, &mut memo, &mut scratch, &mut buffers) {
            Ok(()) => {
                for ((buf, out), was) in buffers.iter().zip(outputs.iter_mut()).zip(&before) {
                    if buf.len() != *was {
                        out.row_ends.push(buf.len() as u32);
                        out.origins.push(origin);
                    }
                }
            }
            Err(r) => rejected.push(r),
        }
    }
    for (buf, out) in buffers.into_iter().zip(outputs.iter_mut()) {
        out.data = buf;
    }
    TransformedBatch {
        outputs,
        rejected,
        source_rows,
    }
}

/// Describes the source line at `origin` of a batch, for a row the target refused.
pub fn describe_origin(source: &SourcePlan, text: &[u8], origin: u32, reason: String) -> Rejected {
    let rest = &text[origin as usize..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    describe(source, &rest[..end], reason)
}
