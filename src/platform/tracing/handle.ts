/** What turning tracing on hands back: the switch (sdk.ts) and the SDK (provider.ts) both return one. */
export interface Tracing {
  /** Exports the spans still buffered and stops the provider. */
  shutdown(): Promise<void>;
}
