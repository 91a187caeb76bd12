#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the project's own fixtures.

Run from the repository root: python3 fuzz/make_seeds.py (Python 3.11+, for tomllib).
"""
import hashlib
import os
import re
import struct
import tomllib

SEEDS = 'fuzz/seeds'


def write(target, name, data):
    os.makedirs(f'{SEEDS}/{target}', exist_ok=True)
    with open(f'{SEEDS}/{target}/{name}', 'wb') as f:
        f.write(data)


def pgoutput_fixtures():
    """Every hex constant of src/pg/pgoutput/fixtures.rs, by name."""
    src = open('src/pg/pgoutput/fixtures.rs').read()
    return {
        m.group(1).lower(): bytes.fromhex(''.join(re.findall(r'"([0-9a-f]*)"', m.group(2))))
        for m in re.finditer(r'const (\w+): &str =\s*([^;]*);', src, re.S)
    }


def pgoutput_and_replication_seeds():
    stream = b''
    for name, payload in pgoutput_fixtures().items():
        write('pgoutput_decode', name, payload)
        stream += struct.pack('>H', len(payload)) + payload
        header = struct.pack('>QQq', 0x1512970, 0x1512A00, 42)
        write('replication_message', f'xlogdata_{name}', b'w' + header + payload)
    write('pgoutput_decode', 'stream_of_every_fixture', stream)
    write('replication_message', 'keepalive', b'k' + struct.pack('>Qq', 7, -1) + b'\x01')
    write('replication_message', 'copy_both_response', b'W\0\0\0\x07\0\0\0d')


def plan_seeds():
    text = open('transforms/legacy_to_projects/plan.toml', 'rb').read()
    write('plan_parse', 'legacy_to_projects.toml', text)
    expressions = set()
    for source in tomllib.loads(text.decode())['sources']:
        expressions.update(source.get('derive', {}).values())
        for output in source['outputs']:
            expressions.update(output['columns'].values())
            if 'when' in output:
                expressions.add(output['when'])
    for e in sorted(expressions):
        write('plan_parse', 'expr_' + hashlib.sha1(e.encode()).hexdigest()[:12], e.encode())


def copy_text_seeds():
    for name, data in {
        'row_with_null_and_empty': b'1\t\\N\t\tx\n',
        'escapes': b'a\\tb\\nc\\\\d\\101\\x41\t\\b\\f\\r\\v\\0\\777\\xg\n',
        'backslash_n_text': b'\\\\N\n',
        'trailing_backslash': b'abc\\\n',
        'rows': b'1\tAcme\t2024-01-01 00:00:00\t{"a": [1, 2]}\n2\t\\N\tcaf\xc3\xa9\t\n',
        'single_empty_column_rows': b'\n\n',
        'round_trip_rows': 'a\tb\u001f\u0000\u001fc\\N\u001e\u001e\nx\r'.encode(),
        'not_utf8': b'\\xff\xfe\n',
    }.items():
        write('copy_text', name, data)


pgoutput_and_replication_seeds()
plan_seeds()
copy_text_seeds()
