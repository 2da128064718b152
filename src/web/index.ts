/**
 * flexmem/web: compute in the browser (onnxruntime-web, WebGPU or WASM), memory rows from the
 * edge. docs/browser.md describes it; src/web/browser-model.ts is the entry point.
 */
export {
  BROWSER_HIERARCHY,
  openBrowserModel,
  type BrowserGenerateRequest,
  type BrowserGeneration,
  type BrowserGenerationStats,
  type BrowserModel,
  type BrowserModelOptions,
} from './browser-model.ts';
export { CacheStoragePageCache, DEFAULT_PAGE_BUDGET_BYTES, PAGE_CACHE_NAME } from './cache-storage-pages.ts';
export { OBJECT_CACHE_NAME } from './verified-object-cache.ts';
export { ORT_ASSETS } from './ort-assets.ts';
export type { Backend, BackendChoice } from './ort-backend.ts';
export type { Traffic } from './edge-origin.ts';
export type { TextDelta } from '../engine/generation.ts';
export type { TierStats } from '../memory/memory-hierarchy.ts';
export type { ChatMessage } from '../api/chat-template.ts';
