/**
 * The stages import downward only: no module of src/ or workers/ may reach itself through its
 * imports (type-only imports included). scripts/import-cycles.mjs is the check; this test runs it
 * on the tree and on a small tree with a known cycle, so the check itself is shown to bite.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
// @ts-expect-error plain .mjs script without types
import { importGraph, cycles } from '../../scripts/import-cycles.mjs';

describe('import graph', () => {
  it('src/ and workers/ have no import cycle', () => {
    const out = execFileSync(process.execPath, ['scripts/import-cycles.mjs'], { encoding: 'utf8' });
    expect(out).toMatch(/^no import cycles among \d+ modules/);
  });

  it('finds a cycle made only of type imports, through an index re-export', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cycles-'));
    try {
      mkdirSync(join(dir, 'a'));
      mkdirSync(join(dir, 'b'));
      writeFileSync(join(dir, 'a', 'index.ts'), "export * from './x.js';\n");
      writeFileSync(join(dir, 'a', 'x.ts'), "import type { B } from '../b/y.js';\nexport type X = B;\n");
      writeFileSync(join(dir, 'b', 'y.ts'), "// import type { Z } from '../a/x.js';\nimport type {\n  X,\n} from '../a';\nexport type B = number;\nexport type Y = X;\n");
      writeFileSync(join(dir, 'c.ts'), "import { X } from './a/x.js';\n");
      const files = ['a/index.ts', 'a/x.ts', 'b/y.ts', 'c.ts'].map((f) => join(dir, f));
      const found: string[][] = cycles(importGraph(files));
      expect(found.map((c) => c.map((f) => f.slice(dir.length + 1)))).toEqual([['a/index.ts', 'a/x.ts', 'b/y.ts']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
