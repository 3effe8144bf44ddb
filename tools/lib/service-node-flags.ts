/**
 * Flags for `node` when it runs one of Summa's services (the launcher, the benchmark; the image's
 * ENTRYPOINT in deploy/docker/Dockerfile repeats them). V8 grows the young generation to 16 MB per
 * semi-space while the Kafka client's ~200 modules load, and keeps it resident for good: capped, a
 * service at rest holds 10–20 MB less. At 4 MB rather than 1, the services spend 14–34% less CPU
 * per request at saturation (a 1 MB young generation promotes more, and collecting took a quarter
 * of their CPU) for about the same memory at rest. Figures in BENCHMARKS.md, "Memory at rest" and
 * "The young generation at 4 MB".
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
