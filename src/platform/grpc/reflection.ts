import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

/** Server reflection (v1 and v1alpha) for everything in `packageDefinition`, package-less services included. */
export function reflectionServiceFor(packageDefinition: PackageDefinition): ReflectionService {
  return withTopLevelNamesFixed(new ReflectionService(packageDefinition));
}

/**
 * @grpc/reflection indexes the symbols of a package-less file as ".CalculatorService", so clients
 * that ask for "CalculatorService" (as grpcurl does) would get NOT_FOUND. Index them under their
 * proper fully-qualified names too.
 */
function withTopLevelNamesFixed(reflection: ReflectionService): ReflectionService {
  type Index = Record<string, unknown>;
  const implementations = reflection as unknown as Record<'v1' | 'v1Alpha', { symbols: Index; services: Index }>;
  for (const implementation of [implementations.v1, implementations.v1Alpha]) {
    for (const index of [implementation.symbols, implementation.services]) {
      for (const name of Object.keys(index)) {
        if (name.startsWith('.')) {
          index[name.slice(1)] = index[name];
          delete index[name];
        }
      }
    }
  }
  return reflection;
}
