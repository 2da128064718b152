/** The memory inspector: one implementation behind `flexmem inspect` and the worker's routes. */
export { diffVersions } from './diff-view.ts';
export { inspectPrompt } from './prompt-view.ts';
export { inspectToken } from './token-view.ts';
export * from './views.ts';
