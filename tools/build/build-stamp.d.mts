export declare const DIST: string;
export declare const STAMP: string;
export declare function inputsHash(root: string): string;
export declare function buildStatus(root: string): { fresh: boolean; reason: string };
