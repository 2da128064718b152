/**
 * The models `GET /v1/models` lists. A model whose pointer cannot be read (malformed, or the
 * origin failing with no pointer held) is left out rather than failing the whole list: the list
 * is what clients choose a model from, so it names what can be served now, and OpenAI's model
 * object has no field to mark one broken. Each model left out is logged once until it is back.
 */
import { InputError } from '../errors.ts';
import type { ModelPointer } from '../storage/object-store.ts';

export class ServableModels {
  private leftOut = new Set<string>();

  async list(names: readonly string[], pointerOf: (model: string) => Promise<ModelPointer>): Promise<ModelPointer[]> {
    const pointers = await Promise.allSettled(names.map(pointerOf));
    const leftOut = new Set<string>();
    const served = pointers.flatMap((result, i) => {
      if (result.status === 'fulfilled') return [result.value];
      // An unknown model (its pointer deleted since the list was read) is simply gone.
      if (!(result.reason instanceof InputError)) {
        leftOut.add(names[i]);
        if (!this.leftOut.has(names[i])) console.warn(`GET /v1/models leaves out ${names[i]}: ${messageOf(result.reason)}`);
      }
      return [];
    });
    this.leftOut = leftOut;
    return served;
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
