# Captures PostgreSQL 15's answers for src/transform/function_corpus.rs. Needs a server on
# /tmp/fnpg port 55999 with databases postgres (LC_CTYPE C) and cutf8 (LC_CTYPE 'C.UTF-8').
# Prints Rust rows into exprs.rs and cases.rs to paste into the corpus.
import subprocess
def run(db, sql):
    p = subprocess.run(['psql','-h','/tmp/fnpg','-p','55999','-U','postgres','-d',db,'-At','-X','-v','ON_ERROR_STOP=1','-c',sql], capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[0]
    return p.stdout[:-1] if p.stdout.endswith('\n') else p.stdout, None
def rs(s):
    out=''
    for ch in s:
        if ch == '\\': out+='\\\\'
        elif ch == '"': out+='\\"'
        elif ord(ch) < 32: out+='\\u{%x}'%ord(ch)
        else: out+=ch
    return '"'+out+'"'
exprs=[l.rstrip('\n') for l in open('exprs.txt') if l.strip()]
lines=[]
for e in exprs:
    # a NULL result prints as empty; mark it
    out, err = run('postgres', "SELECT coalesce(({})::text, '<NULL>')".format(e))
    if out is None:
        lines.append('    ({}, None), // {}'.format(rs(e), err.replace('ERROR:  ','')))
    else:
        lines.append('    ({}, Some({})),'.format(rs(e), rs(out)))
open('exprs.rs','w').write('\n'.join(lines)+'\n')
cases=[l.rstrip('\n') for l in open('cases.txt') if l.strip()]
clines=[]
for c in cases:
    q = c.replace("'","''")
    row=[]
    for db in ['postgres','cutf8']:
        out,err = run(db, "SELECT upper('{0}') || E'\\t' || lower('{0}')".format(q))
        assert err is None, err
        row += out.split('\t')
    clines.append('    ({}, {}, {}, {}, {}),'.format(rs(c), *[rs(x) for x in row]))
open('cases.rs','w').write('\n'.join(clines)+'\n')
