export { CaptureReader, readCaptureFile, CAPTURE_READ_CHUNK_BYTES } from './reader.js';
export type { CaptureFormat, CaptureReaderOptions } from './reader.js';
export { CaptureFormatError, CaptureFileError } from './errors.js';
export { DEFAULT_CAPTURE_LIMITS } from './framer.js';
export type { CaptureLimits } from './framer.js';
export { TsResolution } from './timestamp.js';
