/**
 * One-shot digest as a string, for the ids and hashes built per event (event.id, Community ID,
 * fingerprints): `crypto.hash` where node has it (src/util/oneShotHash.ts), else createHash.
 * Strings are hashed as UTF-8 either way.
 */
import { createHash } from 'node:crypto';
import { oneShotHash } from '../util/oneShotHash.js';

type Encoding = 'hex' | 'base64' | 'base64url';

export function digest(algorithm: 'md5' | 'sha1' | 'sha256', data: string | Buffer, encoding: Encoding): string {
  if (oneShotHash) return oneShotHash(algorithm, data, encoding);
  return createHash(algorithm).update(data).digest(encoding);
}
