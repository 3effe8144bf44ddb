import type * as grpc from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

/** Whether `request` stands for bytes that did not decode (see withTolerantDecoding). */
export function isMalformedRequest(request: unknown): boolean {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/**
 * grpc-js answers a message that does not decode with INTERNAL, as if the server were at fault.
 * Decoding that never throws lets the handler answer INVALID_ARGUMENT instead.
 */
export function withTolerantDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const tolerant: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch {
          return { [MALFORMED]: true };
        }
      },
    };
  }
  return tolerant;
}
