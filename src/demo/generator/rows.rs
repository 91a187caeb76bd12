//! One legacy row at a time, with every kind of mess the `legacy_to_projects` rules must clean
//! up: stages in any spelling, numbers and dates as text, e-mails with stray case and spaces,
//! orphan and NULL references, sub-tasks, bodies big enough to be TOASTed.

use super::copy_text::{CopyRow, Date, DateTime};
use super::counts::LoadedCounts;
use crate::demo::prng::Prng;

/// Top-level items pointing at a project that never existed: rare, yet present at every test
/// scale, so foreign-key validation meets orphans.
const ORPHAN_PROJECT_PER_MILLE: u32 = 5;
/// Top-level items with no project at all.
const NULL_PROJECT_PER_MILLE: u32 = 2;
/// Sub-tasks are a large minority, so both target tables get real volume.
const SUB_TASK_PER_MILLE: u32 = 400;
/// Bodies over the TOAST threshold: rare, as in the real table, but never absent.
const LARGE_BODY_PER_MILLE: u32 = 20;
/// A usual body, and one past the ~2 kB TOAST threshold even after compression.
const SMALL_BODY_BYTES: usize = 200;
pub(super) const LARGE_BODY_BYTES: usize = 4_800;
/// Orphan references point far above any id the generator or the write load ever makes.
const ORPHAN_PROJECT_ID_BASE: u64 = 1_000_000_000;
/// Distinct people per company: small, so that team members repeat across projects.
const PEOPLE_PER_COMPANY: u64 = 6;
/// Legacy timestamps fall in 2019-01-01 .. +7 years (seconds since the Unix epoch).
const EPOCH_2019: i64 = 1_546_300_800;
const SEVEN_YEARS_SECS: u64 = 7 * 365 * 86_400;

/// Free-text stages (`type`) of projects; `None` is SQL NULL. Repeats weight the choice.
#[rustfmt::skip]
const PROJECT_TYPES: &[Option<&str>] = &[
    Some("Planning"), Some(" planning"), Some("IN PROGRESS"), Some("in-progress"),
    Some("in_progress"), Some("In  Progress "), Some("Done"), Some("done "), Some("Review"),
    Some("review"), Some("-"), Some(""), None,
];
#[rustfmt::skip]
const SERVICE_TYPES: &[Option<&str>] = &[
    Some("in progress"), Some("Maintenance"), Some("maintenance "), Some("Done"),
    Some("planning"), None,
];
/// Project and service statuses.
#[rustfmt::skip]
pub(crate) const PROJECT_STATUSES: &[Option<&str>] = &[
    Some("active"), Some("active"), Some("Active "), Some("on hold"), Some("on-hold"),
    Some("archived"), None,
];
/// Item statuses.
#[rustfmt::skip]
pub(crate) const ITEM_STATUSES: &[Option<&str>] = &[
    Some("todo"), Some("todo"), Some("To Do"), Some("doing"), Some("in progress"), Some("done"),
    Some("done"), Some("DONE"), None,
];
#[rustfmt::skip]
pub(crate) const PRIORITIES: &[Option<&str>] = &[
    Some("low"), Some("medium"), Some("high"), Some("urgent"),
    Some("1"), Some("2"), Some("3"), Some("4"),
];
#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "ada", "alan", "barbara", "brian", "claude", "dana", "edsger", "frances", "grace", "ken",
    "leslie", "linus", "margaret", "niklaus", "radia", "tony",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "hopper", "turing", "liskov", "kernighan", "shannon", "scott", "dijkstra", "allen", "murray",
    "thompson", "lamport", "torvalds", "hamilton", "wirth", "perlman", "hoare",
];
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "migrate", "the", "customer", "invoice", "report", "before", "after", "release", "review",
    "deploy", "schema", "legacy", "dashboard", "export", "import", "check", "fix", "update",
    "owner", "budget", "quarter", "team", "api", "login", "page", "slow", "query", "index",
    "backup", "restore", "email", "notify", "vendor", "contract", "renewal", "meeting",
];
/// Bodies of large items draw from this alphabet at random, which pglz cannot compress.
const NOISE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,";

pub(super) fn project_row(row: &mut CopyRow, rng: &mut Prng, counts: &LoadedCounts, id: u64) {
    let company = 1 + rng.below(counts.companies);
    let created = timestamp(rng);
    let name = project_name(rng, id);
    row.plain(format_args!("{id}"))
        .plain(format_args!("{company}"))
        .text(Some(&name))
        .text(rng.pick(PROJECT_TYPES))
        .text(rng.pick(PROJECT_STATUSES))
        .text(messy_email(rng, company).as_deref())
        .text(budget(rng).as_deref());
    match rng.below(10) {
        0 => row.null(),
        1 => row.text(Some("")),
        _ => row.plain(format_args!("{}", Date(created / 86_400 + 30))),
    };
    row.plain(format_args!("{}", DateTime(created)))
        .plain(format_args!("{}", DateTime(updated_after(rng, created))))
        .text(meta(rng).as_deref())
        .end();
}

pub(super) fn service_row(row: &mut CopyRow, rng: &mut Prng, counts: &LoadedCounts, id: u64) {
    let company = 1 + rng.below(counts.companies);
    let name = format!("{} service {id} for company {company}", rng.pick(WORDS));
    row.plain(format_args!("{id}"))
        .plain(format_args!("{company}"))
        .text(Some(&name))
        .text(rng.pick(SERVICE_TYPES))
        .text(rng.pick(PROJECT_STATUSES))
        .text(messy_email(rng, company).as_deref());
    if rng.chance(50) {
        row.null();
    } else {
        let cents = rng.below(500_000);
        row.plain(format_args!("{}.{:02}", cents / 100, cents % 100));
    }
    if rng.chance(10) {
        row.null().null();
    } else {
        let created = timestamp(rng);
        row.plain(format_args!("{}", DateTime(created)))
            .plain(format_args!("{}", DateTime(updated_after(rng, created))));
    }
    row.end();
}

pub(super) fn item_row(
    row: &mut CopyRow,
    rng: &mut Prng,
    counts: &LoadedCounts,
    top_level: &mut Vec<(u64, Option<u64>)>,
    id: u64,
) {
    row.plain(format_args!("{id}"));
    if !top_level.is_empty() && rng.chance(SUB_TASK_PER_MILLE) {
        // A sub-task belongs to its parent's project, as the legacy app made them.
        let (parent, project) = top_level[rng.below(top_level.len() as u64) as usize];
        project_field(row, project).plain(format_args!("{parent}"));
    } else {
        let project = if rng.chance(NULL_PROJECT_PER_MILLE) {
            None
        } else if rng.chance(ORPHAN_PROJECT_PER_MILLE) {
            Some(ORPHAN_PROJECT_ID_BASE + rng.below(ORPHAN_PROJECT_ID_BASE))
        } else {
            Some(1 + rng.below(counts.company_projects))
        };
        top_level.push((id, project));
        project_field(row, project).null();
    }
    let title = format!("{} {} #{id}", rng.pick(WORDS), rng.pick(WORDS));
    let company = 1 + rng.below(counts.companies);
    row.text(Some(&title))
        .text(rng.pick(ITEM_STATUSES))
        .text(priority(rng))
        .text(messy_email(rng, company).as_deref());
    let created = timestamp(rng);
    if rng.chance(200) {
        row.text(Some(""));
    } else {
        row.plain(format_args!("{}", Date(created / 86_400 + 14)));
    }
    row.text(Some(&body(rng)));
    if rng.chance(10) {
        row.null().null();
    } else {
        row.plain(format_args!("{}", DateTime(created)))
            .plain(format_args!("{}", DateTime(updated_after(rng, created))));
    }
    row.end();
}

fn project_field(row: &mut CopyRow, project: Option<u64>) -> &mut CopyRow {
    match project {
        Some(project) => row.plain(format_args!("{project}")),
        None => row.null(),
    }
}

/// A priority as the legacy app stored it, now and then with stray case or missing.
pub(crate) fn priority(rng: &mut Prng) -> Option<&'static str> {
    match rng.below(100) {
        0..=1 => Some("High "),
        2..=4 => None,
        _ => rng.pick(PRIORITIES),
    }
}

/// A company person's address in a random case, sometimes padded, '' or NULL.
pub(crate) fn messy_email(rng: &mut Prng, company: u64) -> Option<String> {
    match rng.below(100) {
        0..=2 => return None,
        3..=5 => return Some(String::new()),
        _ => {}
    }
    let person = rng.below(PEOPLE_PER_COMPANY);
    let first = FIRST_NAMES[((company * 7 + person) % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((company * 13 + person * 5) % LAST_NAMES.len() as u64) as usize];
    let email = format!("{first}.{last}@company{company}.example");
    let email = match rng.below(4) {
        0 => email.to_uppercase(),
        1 => {
            let mut chars = email.chars();
            chars
                .next()
                .map_or(String::new(), |c| c.to_ascii_uppercase().to_string())
                + chars.as_str()
        }
        _ => email,
    };
    Some(match rng.below(10) {
        0 => format!(" {email}"),
        1 => format!("{email}  "),
        _ => email,
    })
}

fn project_name(rng: &mut Prng, id: u64) -> String {
    match rng.below(50) {
        // Quotes and backslashes exercise every layer's escaping.
        0 => format!("O'Brien \"{}\" #{id}", rng.pick(WORDS)),
        1 => format!("R&D \\ {} #{id}", rng.pick(WORDS)),
        _ => format!("{} {} #{id}", rng.pick(WORDS), rng.pick(WORDS)),
    }
}

fn budget(rng: &mut Prng) -> Option<String> {
    let dollars = rng.below(2_000_000);
    match rng.below(10) {
        0 => None,
        1 => Some(String::new()),
        2..=5 => Some(dollars.to_string()),
        _ => {
            // Thousands separators, as typed into the old form: '1,250,000.50'.
            let digits = dollars.to_string();
            let mut grouped = String::with_capacity(digits.len() + 6);
            for (i, digit) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    grouped.push(',');
                }
                grouped.push(digit);
            }
            Some(format!("{grouped}.{:02}", rng.below(100)))
        }
    }
}

fn meta(rng: &mut Prng) -> Option<String> {
    match rng.below(10) {
        0..=2 => None,
        3 => Some(r#"{"note": "said \"urgent\"", "source": "email"}"#.to_string()),
        4..=6 => Some(format!(
            r#"{{"source": "import", "priority_hint": {}, "tags": ["{}", "{}"]}}"#,
            rng.below(5),
            rng.pick(WORDS),
            rng.pick(WORDS)
        )),
        _ => Some(format!(
            r##"{{"color": "#{:06x}", "archived_by": null}}"##,
            rng.below(1 << 24)
        )),
    }
}

/// About [`SMALL_BODY_BYTES`] of words in paragraphs, or now and then [`LARGE_BODY_BYTES`] of
/// incompressible noise so that the value is stored out of line.
fn body(rng: &mut Prng) -> String {
    let mut body = String::with_capacity(SMALL_BODY_BYTES + 16);
    if rng.chance(LARGE_BODY_PER_MILLE) {
        body.push_str("Log excerpt:\n");
        while body.len() < LARGE_BODY_BYTES {
            body.push(NOISE[rng.below(NOISE.len() as u64) as usize] as char);
            if rng.chance(120) {
                body.push(if rng.chance(100) { '\t' } else { ' ' });
            }
        }
        return body;
    }
    let target = SMALL_BODY_BYTES - 20 + rng.below(40) as usize;
    while body.len() < target {
        if !body.is_empty() {
            body.push_str(if rng.chance(40) { "\n\n" } else { " " });
        }
        body.push_str(rng.pick(WORDS));
    }
    body
}

fn timestamp(rng: &mut Prng) -> i64 {
    EPOCH_2019 + rng.below(SEVEN_YEARS_SECS) as i64
}

fn updated_after(rng: &mut Prng, created: i64) -> i64 {
    created + rng.below(400 * 86_400) as i64
}
