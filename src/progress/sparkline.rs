//! A lag trend in one line of block characters: people read a slope faster than a column of
//! numbers, and the question during a follow is "is it draining or growing".

/// Eight heights, lowest first (Unicode block elements, in every terminal font that matters).
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled from zero to the largest value shown (a lag of zero is the
/// floor, so a flat line of small lags does not look like a full one). Unknown values are
/// blanks. Only the last `width` values are drawn.
pub fn sparkline(values: &[Option<f64>], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    shown
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if max <= 0.0 => BARS[0],
            Some(v) => {
                let level = (v.max(0.0) / max * (BARS.len() - 1) as f64).round() as usize;
                BARS[level.min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// Folds `values` into at most `buckets` values, each the largest of its run (a spike stays
/// visible in a narrower line); unknown only when the whole run is.
pub fn squeeze(values: &[Option<f64>], buckets: usize) -> Vec<Option<f64>> {
    let per = values.len().div_ceil(buckets.max(1)).max(1);
    values
        .chunks(per)
        .map(|run| run.iter().flatten().copied().reduce(f64::max))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_from_zero_to_the_largest_value_shown() {
        let values: Vec<Option<f64>> = (0..8).map(|v| Some(f64::from(v))).collect();
        assert_eq!(sparkline(&values, 60), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[Some(0.0), Some(0.0)], 60), "▁▁");
        assert_eq!(sparkline(&[Some(5.0), None, Some(10.0)], 60), "▅ █");
    }

    #[test]
    fn draws_only_the_last_width_values() {
        let values: Vec<Option<f64>> = [100.0, 1.0, 2.0].map(Some).to_vec();
        assert_eq!(sparkline(&values, 2), "▅█");
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn squeezing_keeps_the_peaks() {
        let values = [Some(1.0), Some(9.0), None, None, Some(2.0)];
        assert_eq!(squeeze(&values, 3), vec![Some(9.0), None, Some(2.0)]);
        assert_eq!(squeeze(&values, 10).len(), 5);
    }
}
