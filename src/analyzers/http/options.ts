/** Options of the HTTP analyzers; every limit is named and configurable. */
export interface HttpOptions {
  /** Text bodies (after content decoding) captured into *.body.content up to this many bytes; 0 = off. */
  bodyCaptureBytes: number;
  /** Decompression output cap (zip bombs); beyond it decoding stops and 'http_body_decode_limit' is counted. */
  maxDecodedBodyBytes: number;
  /** Redact credentials in headers, query strings and form bodies. */
  redactCredentials: boolean;
  /**
   * HTTP/1 header block / HTTP/2 header list cap. Also bounds other small buffers: HTTP/2
   * control-frame payloads kept, and server bytes held while sniffing a connection without ALPN.
   */
  maxHeaderBytes: number;
  /** Exchanges tracked per connection (pipelined requests / concurrent HTTP/2 streams). */
  maxPendingExchanges: number;
  /**
   * Content-encoded bodies: how many encoded bytes are kept to decode the captured prefix from
   * (at least bodyCaptureBytes + 1 KiB is used). Only as much as the capture needs is decoded.
   */
  maxEncodedCaptureBytes: number;
}

export const DEFAULT_HTTP_OPTIONS: HttpOptions = {
  bodyCaptureBytes: 4096,
  maxDecodedBodyBytes: 1 << 20,
  redactCredentials: true,
  maxHeaderBytes: 64 * 1024,
  maxPendingExchanges: 1000,
  maxEncodedCaptureBytes: 16 * 1024,
};

export function resolveHttpOptions(o?: Partial<HttpOptions>): HttpOptions {
  const r: HttpOptions = { ...DEFAULT_HTTP_OPTIONS };
  if (o) {
    for (const k of Object.keys(DEFAULT_HTTP_OPTIONS) as (keyof HttpOptions)[]) {
      const v = o[k];
      if (v !== undefined) (r as unknown as Record<string, unknown>)[k] = v;
    }
  }
  return r;
}
