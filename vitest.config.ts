import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A real Kafka broker (KRaft, single node on 127.0.0.1) for test/kafka: scripts/kafka.sh
    // fetches Kafka with Maven into .cache/kafka, formats the storage and starts it.
    globalSetup: ['test/setup/kafka.ts'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
