// Node's `fs`, plus the `globSync` Node 20 lacks.
export * from 'node:fs';
export { default } from 'node:fs';
export { globSync } from 'glob';
