#!/usr/bin/env node
// kqlvalues.js - the value Microsoft's parser (Kusto.Language, the pinned npm build beside this
// file) gives each KQL string literal: one JSON string per input line (the literal's text, e.g.
// "'\\u0041'"), one JSON object per output line: {"literal", "ok", "value"}, where value is the
// literal's text as Kusto.Language decodes it (UTF-16: a lone surrogate comes out as a \ud800
// escape) and ok says the literal parsed without a syntax error.  Used by
// tests/test_hostile_inputs.py to check rmmc's reading of string escapes against Microsoft's.
'use strict';
const path = require('path');
const base = path.dirname(require.resolve('@kusto/language-service-next/package.json', { paths: [__dirname] }));
require(path.join(base, 'bridge.min.js'));
require(path.join(base, 'Kusto.Language.Bridge.min.js'));
const K = global.Kusto;

const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(l => l.trim());
const out = [];
for (const line of lines) {
  const literal = JSON.parse(line);
  const code = K.Language.KustoCode.Parse('print x = ' + literal);
  const diagnostics = code.GetSyntaxDiagnostics();
  const count = diagnostics.Count !== undefined ? diagnostics.Count : (diagnostics.length || 0);
  const kinds = K.Language.Syntax.SyntaxKind;
  let value = null;
  code.Syntax.WalkElements(el => {
    if (value === null && !el.IsToken && (el.Kind === kinds.StringLiteralExpression
                                          || el.Kind === kinds.CompoundStringLiteralExpression)) {
      value = el.LiteralValue;
    }
  });
  out.push(JSON.stringify({ literal, ok: count === 0, value }));
}
process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
