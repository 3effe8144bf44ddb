// The HTTP pair: POST /v1/sums on the calculator against a bare Fastify server that answers it in
// memory (http-echo-server.ts), with the same generator (vegeta), workers and duration for both.
import { freePort } from '../lib/free-port.ts';
import { BenchProcess } from './bench-process.ts';
import { runHttpLoad, type HttpLoadResult } from './http-load.ts';
import { pinnedTool } from '../lib/tools.ts';

export interface HttpPhaseOptions {
  /** The calculator's HTTP port, where POST /v1/sums is served. */
  calculatorHttpPort: number;
  /** Concurrent requests: as many as the gRPC phases' callers. */
  workers: number;
  durationSeconds: number;
  warmupSeconds: number;
  /** Told how many sums the calculator acknowledged (warm-up included), so that the caller waits for their events. */
  onAcknowledged: (count: number) => void;
  log: (message: string) => void;
  onCleanUp: (cleanup: () => Promise<unknown>) => void;
  cpuProfileDir?: string;
}

export interface HttpFigures {
  http_echo_rps: number;
  http_pipeline_rps: number;
  http_ratio: number;
  details: {
    load_generator: string;
    workers: number;
    duration_seconds: number;
    echo: HttpLoadResult;
    pipeline: HttpLoadResult;
  };
}

// No requestId: the calculator gives each request a fresh one, so each is a new sum.
const BODY = JSON.stringify({ num1: 5, num2: 10 });

export async function runHttpPhase(options: HttpPhaseOptions): Promise<HttpFigures> {
  const { workers, durationSeconds, warmupSeconds, log } = options;
  const vegeta = await pinnedTool('vegeta');
  const load = (url: string, seconds: number) => runHttpLoad(vegeta, { url, body: BODY, workers, durationSeconds: seconds });

  log('HTTP: starting the bare Fastify echo server');
  const echoPort = await freePort();
  const echo = new BenchProcess({
    name: 'http-echo',
    entry: 'tools/bench/http-echo-server.ts',
    env: { ECHO_PORT: String(echoPort) },
    isReady: async (output) => output.includes('listening'),
    cpuProfileDir: options.cpuProfileDir,
  });
  options.onCleanUp(() => echo.stop());
  await echo.start();
  const echoUrl = `http://127.0.0.1:${echoPort}/v1/sums`;
  await load(echoUrl, warmupSeconds);
  log(`HTTP: echo, closed loop, ${workers} workers, ${durationSeconds}s`);
  const echoRun = await load(echoUrl, durationSeconds);
  await echo.stop();

  const calculatorUrl = `http://127.0.0.1:${options.calculatorHttpPort}/v1/sums`;
  const warmup = await load(calculatorUrl, warmupSeconds);
  options.onAcknowledged(warmup.acked);
  log(`HTTP: calculator, closed loop, ${workers} workers, ${durationSeconds}s`);
  const pipelineRun = await load(calculatorUrl, durationSeconds);
  options.onAcknowledged(pipelineRun.acked);
  log(
    `HTTP: echo ${echoRun.ackedPerSecond.toFixed(0)}/s, calculator ${pipelineRun.ackedPerSecond.toFixed(0)}/s` +
      (pipelineRun.errors > 0 ? `, ${pipelineRun.errors} not acknowledged (${JSON.stringify(pipelineRun.statusCodes)})` : ''),
  );

  const round = (value: number, digits = 2) => Number(value.toFixed(digits));
  const rounded = (result: HttpLoadResult): HttpLoadResult => ({
    ...result,
    ackedPerSecond: round(result.ackedPerSecond, 0),
    wallSeconds: round(result.wallSeconds),
    p50Ms: round(result.p50Ms),
    p99Ms: round(result.p99Ms),
    generatorCpuMsPerRequest: round(result.generatorCpuMsPerRequest, 3),
  });
  return {
    http_echo_rps: round(echoRun.ackedPerSecond, 0),
    http_pipeline_rps: round(pipelineRun.ackedPerSecond, 0),
    http_ratio: round(pipelineRun.ackedPerSecond / echoRun.ackedPerSecond, 3),
    details: {
      load_generator: 'vegeta (closed loop, -rate=0), HTTP/1.1 keep-alive, same for echo and calculator',
      workers,
      duration_seconds: durationSeconds,
      echo: rounded(echoRun),
      pipeline: rounded(pipelineRun),
    },
  };
}
