#!/usr/bin/env node
// Parse gate for PowerShell files on hosts without a PowerShell runtime.
//   node psparse.cjs [dir-or-file …]        (default: the repository root)
// Every .ps1/.psm1/.psd1 must parse with the tree-sitter PowerShell grammar without ERROR or MISSING nodes, and every
// .ps1xml must be well-formed XML (checked with xmllint). Each problem is printed as file:line:col: message; the exit
// code is 1 when there is any, 2 when the gate itself cannot run.
'use strict';
// Baseline-compile the grammar's wasm only: optimising it takes V8 ~20 s of CPU, which the exit would wait for.
require('v8').setFlagsFromString('--liftoff-only');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const SKIP_DIRS = new Set(['node_modules', 'out', 'bin', 'obj', '.git', 'TestResults', 'BenchmarkDotNet.Artifacts']);
const PS_EXT = new Set(['.ps1', '.psm1', '.psd1']);

function collect(target, found) {
  const st = fs.statSync(target);
  if (st.isFile()) {
    found.push(target);
    return;
  }
  for (const entry of fs.readdirSync(target, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) collect(path.join(target, entry.name), found);
    } else if (entry.isFile()) {
      found.push(path.join(target, entry.name));
    }
  }
}

// Every ERROR or MISSING node, outermost first; children of an ERROR node are reported only when they are MISSING.
function problems(node, out) {
  if (node.isMissing) {
    out.push({ row: node.startPosition.row, col: node.startPosition.column, msg: `missing ${node.type}` });
    return out;
  }
  if (node.type === 'ERROR' || node.isError) {
    const text = node.text.split('\n')[0].trim().slice(0, 60);
    const msg = text ? `syntax error near '${text}'` : 'syntax error (unexpected end of input or token)';
    out.push({ row: node.startPosition.row, col: node.startPosition.column, msg });
  }
  if (!node.hasError && !node.isMissing) return out;
  for (let i = 0; i < node.childCount; i++) {
    const child = node.child(i);
    if (child.hasError || child.isMissing || child.type === 'ERROR') problems(child, out);
  }
  return out;
}

function checkXml(files) {
  if (files.length === 0) return [];
  try {
    execFileSync('xmllint', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('psparse: xmllint not found (apt-get install libxml2-utils): cannot check .ps1xml files');
    process.exit(2);
  }
  const out = [];
  for (const f of files) {
    try {
      execFileSync('xmllint', ['--noout', f], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      // xmllint prints "file:line: parser error : message" — keep the first line of each error.
      const lines = String(e.stderr || '').split('\n').filter(l => /error/.test(l));
      const m = /:(\d+):\s*(.*)$/.exec(lines[0] || '');
      out.push(`${f}:${m ? m[1] : 1}:1: ${m ? m[2] : 'not well-formed XML'}`);
    }
  }
  return out;
}

async function main() {
  const targets = process.argv.slice(2);
  if (targets.length === 0) targets.push(path.resolve(__dirname, '..', '..'));
  const files = [];
  for (const t of targets) collect(path.resolve(t), files);
  const psFiles = files.filter(f => PS_EXT.has(path.extname(f).toLowerCase())).sort();
  const xmlFiles = files.filter(f => path.extname(f).toLowerCase() === '.ps1xml').sort();

  const { Parser, Language } = require('web-tree-sitter');
  await Parser.init();
  const language = await Language.load(require.resolve('tree-sitter-powershell/tree-sitter-powershell.wasm'));
  const parser = new Parser();
  parser.setLanguage(language);

  const failures = [];
  for (const f of psFiles) {
    let src = fs.readFileSync(f, 'utf8');
    if (src.charCodeAt(0) === 0xfeff) src = src.slice(1);
    const tree = parser.parse(src);
    for (const p of problems(tree.rootNode, [])) failures.push(`${f}:${p.row + 1}:${p.col + 1}: ${p.msg}`);
    tree.delete();
  }
  failures.push(...checkXml(xmlFiles));

  for (const line of failures) console.log(line);
  const summary = `psparse: ${psFiles.length} PowerShell file(s), ${xmlFiles.length} .ps1xml file(s), ${failures.length} problem(s)`;
  if (failures.length > 0) {
    console.log(`${summary} — FAILED`);
    process.exit(1);
  }
  console.log(summary);
}

main().catch(e => {
  console.error(`psparse: ${e && e.stack ? e.stack : e}`);
  process.exit(2);
});
