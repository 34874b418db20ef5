/**
 * Runs a capture through the real Engine, which fingerprints tls.session events and passes every
 * event through its Detector (alerts follow their triggering event in the output).
 */
import { readFileSync } from 'node:fs';
import { CaptureReader } from '../../src/capture/index.js';
import { Engine } from '../../src/pipeline/engine.js';
import { loadKeys } from '../../src/pipeline/replay.js';
import type { EcsEvent } from '../../src/events/builder.js';
import type { Detector, DetectorOptions, EcsAlert } from '../../src/detect/index.js';

export interface DetectRun {
  /** Events and alerts in output order. */
  output: EcsEvent[];
  events: EcsEvent[];
  alerts: EcsAlert[];
  detector: Detector;
}

export function replayDetect(capture: string, keylogs: string[] = [], opts: Partial<Omit<DetectorOptions, 'rules'>> = {}): DetectRun {
  const output: EcsEvent[] = [];
  const engine = new Engine((ev) => output.push(JSON.parse(JSON.stringify(ev)) as EcsEvent), loadKeys(keylogs, []), { detect: opts });
  const reader = new CaptureReader(engine);
  const data = readFileSync(capture);
  for (let o = 0; o < data.length; o += 1 << 16) reader.push(data.subarray(o, o + (1 << 16)));
  reader.end();
  engine.finish();
  return {
    output,
    events: output.filter((e) => e.event.kind !== 'alert'),
    alerts: output.filter((e) => e.event.kind === 'alert') as EcsAlert[],
    detector: engine.detector!,
  };
}
