/**
 * vitest globalSetup: a real Kafka broker for test/kafka (scripts/kafka.sh start; the bootstrap
 * address is the last line of its stdout). Provided to tests as inject('kafkaBrokers') and as
 * TLSDECRYPT_TEST_BROKERS. A broker this setup started is stopped at teardown (a reused, already
 * running one is left alone); TLSDECRYPT_TEST_KAFKA_KEEP=1 keeps it running. Set
 * TLSDECRYPT_TEST_BROKERS yourself to use another broker (nothing is started or stopped then).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string;
  }
}

const SCRIPT = fileURLToPath(new URL('../../scripts/kafka.sh', import.meta.url));

export default function setup({ provide }: { provide: (key: 'kafkaBrokers', value: string) => void }): (() => void) | void {
  const given = process.env.TLSDECRYPT_TEST_BROKERS;
  if (given) {
    provide('kafkaBrokers', given);
    return;
  }
  const r = spawnSync('bash', [SCRIPT, 'start'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/kafka.sh start failed (exit ${r.status}): ${(r.stderr ?? '').split('\n').slice(-15).join('\n')}`);
  const lines = r.stdout.trim().split('\n');
  const addr = lines[lines.length - 1].trim();
  if (!/^[\w.-]+:\d+$/.test(addr)) throw new Error(`scripts/kafka.sh start printed no bootstrap address (got '${addr}')`);
  const reused = /reusing running broker/.test(r.stderr ?? '');
  provide('kafkaBrokers', addr);
  process.env.TLSDECRYPT_TEST_BROKERS = addr;
  return () => {
    if (reused || process.env.TLSDECRYPT_TEST_KAFKA_KEEP === '1') return;
    spawnSync('bash', [SCRIPT, 'stop'], { encoding: 'utf8', timeout: 120_000 });
  };
}
