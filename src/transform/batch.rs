//! A batch of COPY lines through a source's transform, as one unit of work for the rayon pool.
//!
//! Each output row remembers where it ends in its buffer and which source line it came from,
//! so the sink can split a batch the target refused and dead-letter exactly the bad rows.

use crate::pg::copy_text::lines;
use crate::transform::program::SourcePlan;

use super::memo::Memo;
use super::row::{describe, transform_copy_line, Env, Rejected, RowOut, RowScratch};

/// The rows one output received from a batch, in one COPY format (see [`TransformedBatch`]).
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

    /// The COPY data of rows `range`.
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
    /// One per output of the source, in plan order, in the output's format.
    pub outputs: Vec<OutputRows>,
    /// One per output: the rows of a binary output that go as COPY text, because a field could
    /// not be written exactly in binary ([`super::copy_binary`]). Empty for text outputs.
    pub text_rows: Vec<OutputRows>,
    pub rejected: Vec<Rejected>,
    pub source_rows: u64,
}

/// Transforms every line of `text` (whole COPY lines of the plan's read columns).
pub fn transform_batch<'r>(
    source: &'r SourcePlan,
    env: &Env<'r>,
    text: &'r [u8],
) -> TransformedBatch {
    let n = source.outputs.len();
    let mut buffers: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(text.len())).collect();
    let mut text_buffers: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut outputs: Vec<OutputRows> = (0..n).map(|_| OutputRows::default()).collect();
    let mut text_rows: Vec<OutputRows> = (0..n).map(|_| OutputRows::default()).collect();
    let mut rejected = Vec::new();
    let mut source_rows = 0;
    let mut memo = Memo::new(source.derived.len());
    let mut scratch = RowScratch::default();
    let mut before: Vec<usize> = Vec::with_capacity(2 * n);
    for line in lines(text) {
        source_rows += 1;
        let origin = (line.as_ptr() as usize - text.as_ptr() as usize) as u32;
        before.clear();
        before.extend(buffers.iter().chain(&text_buffers).map(Vec::len));
        let out = RowOut {
            rows: &mut buffers,
            text_rows: &mut text_buffers,
            keys: None,
        };
        match transform_copy_line(source, env, line, &mut memo, &mut scratch, out) {
            Ok(()) => {
                let written = buffers.iter().chain(&text_buffers);
                let rows = outputs.iter_mut().chain(text_rows.iter_mut());
                for ((buf, out), was) in written.zip(rows).zip(&before) {
                    if buf.len() != *was {
                        out.row_ends.push(buf.len() as u32);
                        out.origins.push(origin);
                    }
                }
            }
            Err(r) => rejected.push(r),
        }
    }
    let filled = buffers.into_iter().chain(text_buffers);
    for (buf, out) in filled.zip(outputs.iter_mut().chain(text_rows.iter_mut())) {
        out.data = buf;
    }
    TransformedBatch {
        outputs,
        text_rows,
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
