/**
 * Flags for `node` when it runs one of Summa's services (the launcher, the benchmark; the image's
 * ENTRYPOINT in deploy/docker/Dockerfile repeats them). V8 grows the young generation to 16 MB per
 * semi-space while the Kafka client's ~200 modules load, and keeps it resident for good: capped at
 * 1 MB, a service at rest holds 10–20 MB less, for more (cheap) scavenges under load. Figures in
 * BENCHMARKS.md, "Memory at rest".
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
