/**
 * The ports the services listen on when their *_PORT variables are not set, and where the CLI and
 * the local tools look for them. The README, deploy/ and the deployment tests state the same numbers.
 */
export const DEFAULT_PORTS = Object.freeze({
  calculatorGrpc: 9090,
  calculatorHttp: 8090,
  relayHttp: 8091,
  totalsHttp: 8080,
} as const);
