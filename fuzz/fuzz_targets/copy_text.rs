//! PostgreSQL's COPY text format. Any bytes, read as COPY output (lines, fields, escapes), give
//! values or errors, never a panic. And any text, read as rows (split on U+001E) of fields
//! (split on U+001F, a lone U+0000 meaning NULL), encoded as COPY text and decoded again, gives
//! back exactly those rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::pg::copy_text::{decode_field, encode_field, lines, split_line, NULL};

const ROW_SEPARATOR: char = '\u{1e}';
const FIELD_SEPARATOR: char = '\u{1f}';
const NULL_FIELD: &str = "\u{0}";

fn decode_anything(data: &[u8]) {
    let mut fields = Vec::new();
    for line in lines(data) {
        split_line(line, &mut fields);
        for raw in fields.iter().flatten() {
            let _ = decode_field(raw);
        }
    }
}

fn encode_row(row: &[Option<&str>]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, field) in row.iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        match field {
            Some(value) => encode_field(value, &mut line),
            None => line.extend_from_slice(NULL),
        }
    }
    line.push(b'\n');
    line
}

fn decode_row(line: &[u8]) -> Vec<Option<String>> {
    let mut raw = Vec::new();
    split_line(line, &mut raw);
    let decode = |f: &[u8]| {
        decode_field(f)
            .expect("an encoded field decodes")
            .into_owned()
    };
    raw.into_iter().map(|field| field.map(decode)).collect()
}

fn round_trip(text: &str) {
    let rows: Vec<Vec<Option<&str>>> = text
        .split(ROW_SEPARATOR)
        .map(|row| {
            row.split(FIELD_SEPARATOR)
                .map(|field| (field != NULL_FIELD).then_some(field))
                .collect()
        })
        .collect();
    let buf: Vec<u8> = rows.iter().flat_map(|row| encode_row(row)).collect();
    let decoded: Vec<Vec<Option<String>>> = lines(&buf).map(decode_row).collect();
    let expected: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|row| row.iter().map(|f| f.map(str::to_owned)).collect())
        .collect();
    assert_eq!(decoded, expected, "COPY text {buf:?}");
}

fuzz_target!(|data: &[u8]| {
    decode_anything(data);
    if let Ok(text) = std::str::from_utf8(data) {
        round_trip(text);
    }
});
