#!/usr/bin/env node
// kqlcheck.js - KQL syntax/semantic oracle for rmmc's tests, built on Microsoft's Kusto.Language
// parser (npm @kusto/language-service-next, Bridge.NET -> JavaScript), pinned in package.json /
// package-lock.json beside this file (install with `npm ci` here, or `make test` at the repo root).
//
// Usage:
//   node kqlcheck.js [options] [FILE ...]        each FILE is one query
//   echo 'T | take 1' | node kqlcheck.js [options]   stdin is one query
//   node kqlcheck.js --jsonl [options] < q.jsonl     one {"id":..,"query":..} (or a JSON string) per line
//   node kqlcheck.js --serve [options]               persistent: answers each stdin JSON line as it arrives
//                                                    (same input form as --jsonl; one result line per input)
//
// Options:
//   --schema FILE   semantic analysis against the tables in FILE (JSON: {"database":..,"tables":{name:"(Col:type, ...)"}});
//                   without it only syntax is checked (KustoCode.Parse, no GlobalState database)
//   --defender      shorthand for --schema with the Defender schema of the shared test data
//                   ($KQLCHECK_DEFENDER_SCHEMA, else <repo>/../shared/tools/defender_schema.json)
//   --tree          add an S-expression of the syntax tree ("tree")
//   --literals      add the value of every string literal, as the parser decodes it ("literals",
//                   in source order; a compound 'a' 'b' literal is one value)
//   --pretty        pretty-print JSON (default: one JSON object per line)
//   --time          print timing summary to stderr
// Output (one JSON object per query):
//   {"id","ok","syntax_ok","semantic":bool,"result_type","diagnostics":[{"severity","code","category",
//     "message","start","end","line","col","syntax":bool,"text"}], "tree"?}
//   ok        = no diagnostic of severity Error (syntax + semantic if --schema)
//   syntax_ok = no syntax diagnostic of severity Error
//   line/col are 1-based (Kusto's TryGetLineAndOffset); start/end are 0-based UTF-16 offsets.
//   In --serve mode a line that cannot be handled is answered {"id","error"}.
// Exit status: 0 when every query is ok, 1 otherwise, 2 on usage errors.
'use strict';
const fs = require('fs');
const path = require('path');

function loadKusto() {
  // bridge.js defines the global Bridge/System runtime; Kusto.Language.Bridge.js defines global Kusto.
  const base = path.dirname(require.resolve('@kusto/language-service-next/package.json', { paths: [__dirname] }));
  require(path.join(base, 'bridge.min.js'));
  require(path.join(base, 'Kusto.Language.Bridge.min.js'));
  return global.Kusto;
}

function defaultDefenderSchema() {
  if (process.env.KQLCHECK_DEFENDER_SCHEMA) return process.env.KQLCHECK_DEFENDER_SCHEMA;
  // tests/oracle -> tests -> <repo> -> <repo>/.. ; the shared test data lives beside the repo.
  return path.resolve(__dirname, '..', '..', '..', 'shared', 'tools', 'defender_schema.json');
}

function listToArray(list) {
  const out = [];
  if (!list) return out;
  const n = list.Count;
  for (let i = 0; i < n; i++) out.push(list.getItem(i));
  return out;
}

function buildGlobals(K, schemaFile) {
  const schema = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));
  const Sym = K.Language.Symbols;
  const tables = Object.entries(schema.tables).map(([name, cols]) => new Sym.TableSymbol.$ctor7(name, cols, null));
  const db = new Sym.DatabaseSymbol.ctor(schema.database || 'db', tables);
  return K.Language.GlobalState.Default.WithDatabase(db);
}

function kindName(K, kind) {
  try { return System.Enum.toString(K.Language.Syntax.SyntaxKind, kind); } catch (e) { return String(kind); }
}

function stringLiterals(K, el, out) {
  if (el == null || el.IsToken) return out;
  const kind = kindName(K, el.Kind);
  if (kind === 'StringLiteralExpression' || kind === 'CompoundStringLiteralExpression') {
    out.push(String(el.LiteralValue));
    return out;
  }
  for (let i = 0; i < el.ChildCount; i++) stringLiterals(K, el.GetChild(i), out);
  return out;
}

function treeToSexpr(K, el) {
  if (el == null) return null;
  if (el.IsToken) {
    const t = el.Text;
    return el.IsMissing ? '<missing ' + kindName(K, el.Kind) + '>' : JSON.stringify(t);
  }
  const parts = [kindName(K, el.Kind)];
  for (let i = 0; i < el.ChildCount; i++) {
    const c = el.GetChild(i);
    if (c == null) continue;
    const s = treeToSexpr(K, c);
    if (s !== null && s !== '""') parts.push(s);
  }
  return '(' + parts.join(' ') + ')';
}

function typeDisplay(t) {
  if (!t) return null;
  if (t.Columns) {  // TableSymbol: render as schema "(Col:type, ...)"
    return '(' + listToArray(t.Columns).map(c => c.Name + ':' + (c.Type ? c.Type.Name : '?')).join(', ') + ')';
  }
  return t.Name;
}

function check(K, text, globals, opts) {
  const code = globals
    ? K.Language.KustoCode.ParseAndAnalyze(text, globals)
    : K.Language.KustoCode.Parse(text);
  const syntaxDiags = listToArray(code.GetSyntaxDiagnostics());
  const allDiags = globals ? listToArray(code.GetDiagnostics()) : syntaxDiags;
  const syntaxKeys = new Set(syntaxDiags.map(d => d.Start + ':' + d.Length + ':' + d.Code + ':' + d.Message));
  const diagnostics = allDiags.map(d => {
    const line = { v: 0 }, col = { v: 0 };
    const start = d.HasLocation ? d.Start : null;
    if (start !== null) code.TryGetLineAndOffset(start, line, col);
    return {
      severity: d.Severity, code: d.Code, category: d.Category, message: d.Message,
      start, end: d.HasLocation ? d.End : null,
      line: start !== null ? line.v : null, col: start !== null ? col.v : null,
      syntax: syntaxKeys.has(d.Start + ':' + d.Length + ':' + d.Code + ':' + d.Message),
      text: d.HasLocation ? text.substring(d.Start, d.End) : null,
    };
  });
  const isErr = d => d.severity === 'Error';
  const res = {
    ok: !diagnostics.some(isErr),
    syntax_ok: !diagnostics.some(d => d.syntax && isErr(d)),
    semantic: !!globals,
    kind: code.Kind,
    result_type: globals ? typeDisplay(code.ResultType) : null,
    diagnostics,
  };
  if (opts.tree) res.tree = treeToSexpr(K, code.Syntax);
  if (opts.literals) res.literals = stringLiterals(K, code.Syntax, []);
  return res;
}

function parseInputLine(ln, n) {
  const o = JSON.parse(ln);
  if (typeof o === 'string') return { id: n, text: o };
  const id = o !== null && typeof o === 'object' && o.id !== undefined ? o.id : n;
  if (o === null || typeof o !== 'object' || typeof o.query !== 'string') {
    const err = new Error('expected a JSON string or an object with a string "query"');
    err.inputId = id;
    throw err;
  }
  return { id, text: o.query };
}

function serve(K, globals, opts) {
  // Answers one JSON line per non-blank input line, in order. Output is buffered per chunk of input
  // (one write per batch of lines that arrived together) so that a pipelined client gets high
  // throughput, and is flushed before the next chunk is awaited, so an interactive client never waits.
  let n = 0;
  let pending = '';
  const handle = (ln, out) => {
    if (!ln.trim()) return;
    n++;
    let r;
    let id = n;
    try {
      const inp = parseInputLine(ln, n);
      id = inp.id;
      r = Object.assign({ id }, check(K, inp.text, globals, opts));
    } catch (e) {
      if (e && e.inputId !== undefined) id = e.inputId;
      r = { id, error: String(e && e.message || e) };
    }
    out.push(JSON.stringify(r));
  };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', chunk => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    const out = [];
    for (const ln of lines) handle(ln.endsWith('\r') ? ln.slice(0, -1) : ln, out);
    if (out.length) process.stdout.write(out.join('\n') + '\n');
  });
  process.stdin.on('end', () => {
    const out = [];
    handle(pending, out);
    if (out.length) process.stdout.write(out.join('\n') + '\n');
  });
}

function main() {
  const argv = process.argv.slice(2);
  const opts = { files: [], schema: null, tree: false, literals: false, pretty: false, jsonl: false, time: false, serve: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--schema') {
      if (i + 1 >= argv.length) { process.stderr.write('--schema needs a FILE\n'); return 2; }
      opts.schema = argv[++i];
    }
    else if (a === '--defender') opts.schema = defaultDefenderSchema();
    else if (a === '--tree') opts.tree = true;
    else if (a === '--literals') opts.literals = true;
    else if (a === '--pretty') opts.pretty = true;
    else if (a === '--jsonl') opts.jsonl = true;
    else if (a === '--time') opts.time = true;
    else if (a === '--serve') opts.serve = true;
    else if (a === '-h' || a === '--help') { process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 31).join('\n') + '\n'); return 0; }
    else if (a.startsWith('--')) { process.stderr.write('unknown option ' + a + '\n'); return 2; }
    else opts.files.push(a);
  }
  if (opts.schema && !fs.existsSync(opts.schema)) {
    process.stderr.write('schema file not found: ' + opts.schema + '\n');
    return 2;
  }
  const t0 = process.hrtime.bigint();
  const K = loadKusto();
  const globals = opts.schema ? buildGlobals(K, opts.schema) : null;
  const t1 = process.hrtime.bigint();

  if (opts.serve) {
    serve(K, globals, opts);
    return undefined;  // keep running until stdin closes
  }

  const inputs = [];
  if (opts.jsonl) {
    const raw = fs.readFileSync(opts.files.length ? opts.files[0] : 0, 'utf8');
    raw.split('\n').forEach((ln, i) => {
      if (!ln.trim()) return;
      inputs.push(parseInputLine(ln, i + 1));
    });
  } else if (opts.files.length) {
    for (const f of opts.files) inputs.push({ id: f, text: fs.readFileSync(f, 'utf8') });
  } else {
    inputs.push({ id: '<stdin>', text: fs.readFileSync(0, 'utf8') });
  }

  let allOk = true;
  for (const inp of inputs) {
    const r = Object.assign({ id: inp.id }, check(K, inp.text, globals, opts));
    if (!r.ok) allOk = false;
    process.stdout.write((opts.pretty ? JSON.stringify(r, null, 2) : JSON.stringify(r)) + '\n');
  }
  const t2 = process.hrtime.bigint();
  if (opts.time) {
    const ms = x => Number(x) / 1e6;
    process.stderr.write(`load_ms=${ms(t1 - t0).toFixed(1)} check_ms=${ms(t2 - t1).toFixed(1)} queries=${inputs.length} per_query_ms=${(ms(t2 - t1) / Math.max(1, inputs.length)).toFixed(2)}\n`);
  }
  return allOk ? 0 : 1;
}

const rc = main();
if (rc !== undefined) process.exitCode = rc;
