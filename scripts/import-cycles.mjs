#!/usr/bin/env node
// Fails (exit 1) when the import graph of src/ and workers/ has a cycle. Type-only imports count
// too: `import type` between two stages still ties their contracts together, and the design says
// stages import downward only. Prints each cycle found (strongly connected components of more than
// one module, or a module importing itself), so a failure says what to untangle.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function listTs(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listTs(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

// Static `import ... from '...'`, `export ... from '...'`, side-effect `import '...'` and
// `import('...')`: every form that makes one module depend on another.
const SPEC = /(?:\bimport\s+(?:type\s+)?(?:[\w*${}\s,]+?\s+from\s+)?|\bexport\s+(?:type\s+)?(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?\s+from\s+|\bimport\s*\(\s*)['"]([^'"]+)['"]/g;

function stripComments(src) {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

export function importGraph(files) {
  const graph = new Map();
  for (const file of files) {
    const deps = new Set();
    const src = stripComments(readFileSync(file, 'utf8'));
    for (const m of src.matchAll(SPEC)) {
      const spec = m[1];
      if (!spec.startsWith('.')) continue;
      let target = resolve(dirname(file), spec);
      if (target.endsWith('.js')) target = target.slice(0, -3) + '.ts';
      else if (!target.endsWith('.ts')) target = existsSync(target + '.ts') ? target + '.ts' : join(target, 'index.ts');
      if (existsSync(target)) deps.add(target);
    }
    graph.set(file, deps);
  }
  return graph;
}

/** Tarjan's strongly connected components; returns those that form a cycle. */
export function cycles(graph) {
  let index = 0;
  const idx = new Map(), low = new Map(), onStack = new Set(), stack = [], found = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); comp.push(w); } while (w !== v);
      if (comp.length > 1 || (graph.get(v)?.has(v) ?? false)) found.push(comp.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return found;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = [...listTs(join(root, 'src')), ...listTs(join(root, 'workers'))];
  const graph = importGraph(files);
  const found = cycles(graph);
  for (const comp of found) {
    const set = new Set(comp);
    console.log(`import cycle among ${comp.length} modules:`);
    for (const f of comp) {
      const inside = [...(graph.get(f) ?? [])].filter((d) => set.has(d)).map((d) => relative(root, d));
      console.log(`  ${relative(root, f)} -> ${inside.join(', ')}`);
    }
  }
  if (found.length > 0) process.exit(1);
  console.log(`no import cycles among ${files.length} modules`);
}
