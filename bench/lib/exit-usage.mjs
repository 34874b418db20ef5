// Preloaded with `node --import` into a measured child (tlsdecrypt run / publish): at exit, writes
// one line to stderr: "BENCH_USAGE {json}" with the process's peak RSS (VmHWM; worker threads
// share it) and its CPU time (all threads).
import { readFileSync, writeSync } from 'node:fs';

process.on('exit', () => {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  const ru = process.resourceUsage();
  const r = { peakRssBytes: hwm ? Number(hwm[1]) * 1024 : ru.maxRSS * 1024, cpuUserUs: ru.userCPUTime, cpuSysUs: ru.systemCPUTime };
  try { writeSync(2, `BENCH_USAGE ${JSON.stringify(r)}\n`); } catch { /* stderr closed */ }
});
