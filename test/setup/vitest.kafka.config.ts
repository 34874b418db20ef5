/**
 * Runs the Kafka tests with the broker globalSetup even before it is wired into vitest.config.ts:
 *   npx vitest run --config test/setup/vitest.kafka.config.ts test/kafka
 */
import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig } from 'vitest/config';
import base from '../../vitest.config.js';

export default mergeConfig(
  base,
  defineConfig({
    root: fileURLToPath(new URL('../..', import.meta.url)),
    test: { globalSetup: ['test/setup/kafka.ts'] },
  }),
);
