use super::*;

fn n(s: &str) -> BigDecimal {
    s.parse().unwrap()
}

#[test]
fn div_scale_follows_select_div_scale() {
    // qweight from base-10000 weights and first digits, then at least 16 significant digits.
    assert_eq!(select_div_scale(&n("1"), &n("3")), 20);
    assert_eq!(select_div_scale(&n("0.125"), &n("7")), 20);
    assert_eq!(select_div_scale(&n("12345678901234567890.5"), &n("2")), 1);
    assert_eq!(select_div_scale(&n("1e-100").with_scale(100), &n("3")), 120);
    assert_eq!(select_div_scale(&n("1"), &n("1e600")), 620);
    assert_eq!(
        select_div_scale(&n("1e-990").with_scale(990), &n("3")),
        1000
    );
}

#[test]
fn nbase_lead_reads_base_10000_digits() {
    assert_eq!(nbase_lead(&n("12345.6789")), (1, 1));
    assert_eq!(nbase_lead(&n("0.5")), (-1, 5000));
    assert_eq!(nbase_lead(&n("0.00012")), (-1, 1));
    assert_eq!(nbase_lead(&n("0.0")), (0, 0));
}

#[test]
fn quotients_round_half_away_from_zero() {
    let q = |a: &str, b: &str, scale| divide_rounded(&n(a), &n(b), scale).to_string();
    assert_eq!(q("2.5", "2", 1), "1.3");
    assert_eq!(q("-2.5", "2", 1), "-1.3");
    assert_eq!(q("2.4", "-2", 0), "-1");
}
