#!/usr/bin/env node
// Instructions, not seconds: a whole fresh `replay` process run under valgrind (cachegrind, Ir
// only, no cache simulation), its instruction count split by where it was spent (V8's TurboFan
// compiler, interpreter/baseline ICs and builtins, JIT-compiled code, GC, OpenSSL, JSON, ...).
// On a shared host where CPU seconds of the same run vary ±20 %, the count of a build varies
// ~1–2 % between runs (V8's concurrent compiles finish at different points), so A/B differences
// of a few per cent show, and the warm-up (TurboFan's share) is measured directly.
//
//   npm run build && node bench/instructions.mjs [--capture NAME] [--base DIR] [--passes N]
//                                                [--flags="--v8-flag ..."] [--runs N]
//
// NAME is .cache/bench/NAME.pcap + NAME.keys.log (default nosni). --passes N > 1 replays the
// capture N times in one process (bench/warmup.mjs): the difference to a 1-pass run is what the
// later, warmer passes cost. --flags are node/V8 flags given to both builds. valgrind slows node
// ~50x: a 3,000-session capture takes 2–3 minutes per run. Run it under `flock /tmp/bench.lock`
// on a shared host like every benchmark (the count does not depend on the load, but the run
// loads the machine for others).
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CACHE, ROOT, fmt, need, needBuild, printMachine } from './lib/common.mjs';

const { values } = parseArgs({ options: {
  capture: { type: 'string', default: 'nosni' }, base: { type: 'string' }, passes: { type: 'string', default: '1' },
  flags: { type: 'string', default: '' }, runs: { type: 'string', default: '1' },
} });
needBuild();
const capture = `${CACHE}/${values.capture}.pcap`, keylog = `${CACHE}/${values.capture}.keys.log`;
need(capture, 'make it with scripts/bench/make-bulk.sh');
const flags = values.flags.split(/\s+/).filter(Boolean);
const passes = Number(values.passes);
printMachine();
console.log(`${values.capture}: ${passes} pass(es) per process, node flags ${JSON.stringify(flags)}; valgrind --tool=cachegrind --cache-sim=no`);

// Where an instruction was spent, by the symbol cachegrind names (node's own symbols are there;
// JIT code has none: '???').
const CATEGORIES = [
  ['turbofan', /v8::internal::compiler::|v8::internal::(Pipeline|OptimizedCompilationJob|TurbofanCompilationJob|Zone\b|ZoneList)/],
  ['gc', /v8::internal::(Scavenger|MarkCompact|Marking|ConcurrentMarking|Sweeper|Heap::|MinorMarkCompact|IncrementalMarking|ArrayBufferSweeper|MemoryAllocator|PagedSpace|Evacuat|RememberedSet|SlotSet|HeapObjectVisitor|MainMarking|WeakObjects|GlobalHandles|LocalHeap|BasicMemoryChunk|Page::|FreeList)|Scavenge|heap::base::/],
  ['ics+builtins (unoptimised code\'s property access, calls, allocation)', /Builtins_|v8::internal::Builtin_/],
  ['jit code (Sparkplug + TurboFan output)', /^\?\?\?:\?\?\?$/],
  ['parser+bytecode', /v8::internal::(Parser|Scanner|Preparse|Bytecode|interpreter::|Ast|Compiler::|FuncNameInferrer|Scope|Deserializer|CodeSerializer)/],
  ['JSON.stringify', /JsonStringifier|Json/],
  ['openssl', /ossl_|EVP_|aes|gcm|sha[0-9]|OPENSSL|CRYPTO_|BN_|bn_|OBJ_|ASN1|HMAC|evp_|lh_|OSSL|md5/i],
  ['v8 runtime', /v8::internal::/],
  ['libc (malloc, memcpy, locks)', /libc|malloc|free|memmove|memcpy|memset|pthread|str[a-z]*\b|__/],
  ['node C++', /node::|uv_|v8::/],
];

function measure(root, tag) {
  const dir = mkdtempSync(join(tmpdir(), 'tlsd-cg-'));
  try {
    const out = join(dir, 'cg.out');
    const child = passes > 1 ? [`${ROOT}bench/warmup.mjs`, capture, keylog, String(passes)] : [`${root}/bench/lib/replay-child.mjs`, capture, keylog, '1'];
    const env = passes > 1 ? { ...process.env, TLSDECRYPT_DIST: `${root}/dist/src/` } : process.env;
    const r = spawnSync('valgrind', ['--tool=cachegrind', '--cache-sim=no', '--smc-check=all-non-file', `--cachegrind-out-file=${out}`, process.execPath, ...flags, ...child],
      { encoding: 'utf8', env, maxBuffer: 1 << 26, timeout: 3_600_000 });
    if (r.status !== 0) throw new Error(`${tag}: valgrind failed (${r.status ?? r.signal}): ${r.stderr.slice(-2000)}`);
    const a = spawnSync('cg_annotate', ['--threshold=0', out], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const by = new Map(CATEGORIES.map(([k]) => [k, 0]));
    by.set('other', 0);
    let total = 0;
    for (const line of a.stdout.split('\n')) {
      const m = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
      if (!m || m[2].includes('PROGRAM TOTALS')) continue;
      const n = Number(m[1].replaceAll(',', ''));
      const k = CATEGORIES.find(([, re]) => re.test(m[2]))?.[0] ?? 'other';
      by.set(k, by.get(k) + n);
      total += n;
    }
    return { total, by };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const builds = values.base ? [['A', values.base], ['B', ROOT.replace(/\/$/, '')]] : [['B', ROOT.replace(/\/$/, '')]];
const results = {};
for (let i = 0; i < Number(values.runs); i++) {
  for (const [tag, root] of i % 2 ? [...builds].reverse() : builds) {
    const r = measure(root, tag);
    (results[tag] ??= []).push(r);
    console.log(`${tag} run ${i + 1}: ${fmt(r.total / 1e9, 3)} G instructions: ` +
      [...r.by].filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${fmt(v / 1e9, 3)} G (${fmt((100 * v) / r.total, 1)} %)`).join(', '));
  }
}
if (results.A && results.B) {
  const mean = (rs) => rs.reduce((s, r) => s + r.total, 0) / rs.length;
  console.log(`B/A (mean instructions): ${fmt(mean(results.B) / mean(results.A), 3)}`);
}
