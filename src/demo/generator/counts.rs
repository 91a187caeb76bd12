//! How many rows each legacy table gets at a scale factor.

/// Row counts at scale factor 1 (the size the benchmarks quote).
const PROJECTS_AT_SF1: f64 = 100_000.0;
const SERVICES_AT_SF1: f64 = 20_000.0;
const ITEMS_AT_SF1: f64 = 1_000_000.0;
const COMPANIES_AT_SF1: f64 = 5_000.0;
/// Even tiny test scales need several teams, or per-team grouping proves nothing.
const MIN_COMPANIES: u64 = 5;

/// Rows per legacy table (and the number of companies they spread over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedCounts {
    pub companies: u64,
    pub company_projects: u64,
    pub company_services: u64,
    pub vortex_items: u64,
}

impl LoadedCounts {
    /// The counts a scale factor produces (at least one row per table).
    pub fn for_scale(scale: f64) -> LoadedCounts {
        let rows = |at_sf1: f64| ((at_sf1 * scale).round() as u64).max(1);
        LoadedCounts {
            companies: rows(COMPANIES_AT_SF1).max(MIN_COMPANIES),
            company_projects: rows(PROJECTS_AT_SF1),
            company_services: rows(SERVICES_AT_SF1),
            vortex_items: rows(ITEMS_AT_SF1),
        }
    }
}
