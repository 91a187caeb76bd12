//! The per-row hot path without a database: COPY text lines of the seed migration's largest
//! table through the compiled plan, as the backfill's rayon workers run it.

use std::collections::HashMap;
use std::sync::RwLock;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard::pg::copy_binary::BinaryType;
use switchyard::plan::Plan;
use switchyard::transform::batch::transform_batch;
use switchyard::transform::copy_binary::RowFormat;
use switchyard::transform::eval::{EvalError, Lookups};
use switchyard::transform::row::Env;

/// Rows per benchmark batch, about the size of a real 1 MiB batch.
const ROWS: usize = 4_000;

/// The read path of the real lookup cache: a read lock and a hash probe; misses insert.
struct MemoryLookups(Vec<RwLock<HashMap<String, i64>>>);

impl Lookups for MemoryLookups {
    fn id(&self, lookup: usize, name: &str) -> Result<i64, EvalError> {
        if let Some(id) = self.0[lookup].read().unwrap().get(name) {
            return Ok(*id);
        }
        let mut m = self.0[lookup].write().unwrap();
        let next = m.len() as i64 + 1;
        Ok(*m.entry(name.to_owned()).or_insert(next))
    }
}

/// Lines shaped like the generator's vortex_items, in the plan's column order.
fn vortex_lines(columns: &[String]) -> Vec<u8> {
    let statuses = [
        "todo",
        "To Do",
        "doing",
        "in progress",
        "done",
        "DONE",
        "\\N",
    ];
    let priorities = ["low", "medium", "high", "urgent", "1", "2", "High ", "\\N"];
    let body = "lorem ipsum dolor sit amet ".repeat(8);
    let mut out = Vec::new();
    for i in 0..ROWS {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "id" => (1_000_000 + i).to_string(),
                "project_id" => (i % 5000).to_string(),
                "parent_item_id" => {
                    if i % 5 < 2 {
                        (i / 2).to_string()
                    } else {
                        "\\N".to_owned()
                    }
                }
                "title" => format!("Item {i}\\twith a tab"),
                "status" => statuses[i % statuses.len()].to_owned(),
                "priority" => priorities[i % priorities.len()].to_owned(),
                "assignee_email" => format!(" User{}@Example.com", i % 97),
                "due" => {
                    if i % 3 == 0 {
                        String::new()
                    } else {
                        "2024-05-06".to_owned()
                    }
                }
                "body" => body.clone(),
                "created_at" | "updated_at" => "2024-03-01 10:11:12.345678".to_owned(),
                other => panic!("unexpected column {other}"),
            })
            .collect();
        out.extend_from_slice(fields.join("\t").as_bytes());
        out.push(b'\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let plan = Plan::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("transforms/legacy_to_projects/plan.toml"),
    )
    .unwrap();
    let source = plan
        .sources
        .iter()
        .find(|s| s.table.name == "vortex_items")
        .unwrap();
    let lines = vortex_lines(&source.columns);
    let lookups = MemoryLookups(
        plan.lookups
            .iter()
            .map(|_| RwLock::new(HashMap::new()))
            .collect(),
    );
    let text = Env {
        maps: &plan.maps,
        lookups: &lookups,
        formats: &[],
    };
    // The seed's tasks and sub_tasks columns, as the target's catalog gives them.
    let output_row = [
        BinaryType::Uuid,
        BinaryType::Int8,
        BinaryType::Uuid,
        BinaryType::Text,
        BinaryType::Int2,
        BinaryType::Int2,
        BinaryType::Text,
        BinaryType::Date,
        BinaryType::Text,
        BinaryType::TimestampTz,
        BinaryType::TimestampTz,
    ];
    let mut formats = vec![RowFormat::Text; plan.outputs().count()];
    for output in &source.outputs {
        formats[output.number] = RowFormat::Binary(output_row.into());
    }
    let binary = Env {
        formats: &formats,
        ..text
    };
    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("vortex_items rows, COPY text out", |b| {
        b.iter(|| transform_batch(source, &text, &lines))
    });
    group.bench_function("vortex_items rows, binary COPY out", |b| {
        b.iter(|| transform_batch(source, &binary, &lines))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
