/**
 * The deployment's API keys (the API_KEYS secret): plain keys, or `sha256:<hex>` digests of keys so
 * the plain key need not be stored anywhere but with its holder.
 */
import { InternalError } from '../errors.ts';

const DIGEST_PREFIX = 'sha256:';

export class ApiKeys {
  #digests: Uint8Array[] | null = null;

  private constructor(private readonly entries: readonly (string | Uint8Array)[]) {}

  /**
   * A comma-separated list; blank entries are ignored. An entry starting with `sha256:` is the
   * SHA-256 of a key's UTF-8 bytes, as 64 hex digits (`printf %s "$KEY" | sha256sum`).
   */
  static parse(list: string): ApiKeys {
    const entries = list
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '')
      .map((entry, i) => {
        if (!entry.toLowerCase().startsWith(DIGEST_PREFIX)) return entry;
        const hex = entry.slice(DIGEST_PREFIX.length);
        // The entry itself is a secret: the message names only its position.
        if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new InternalError(`API_KEYS entry ${i + 1} is not sha256: followed by 64 hex digits`);
        return Uint8Array.from(hex.match(/../g)!, (byte) => Number.parseInt(byte, 16));
      });
    return new ApiKeys(entries);
  }

  get count(): number {
    return this.entries.length;
  }

  /**
   * Whether `key` is one of the keys. Both sides are compared as SHA-256 digests, every configured
   * digest in full: the time taken can tell a caller at most how much of a digest they matched,
   * and a digest prefix does not lead back to a key.
   */
  async accepts(key: string): Promise<boolean> {
    const [presented, configured] = await Promise.all([sha256(key), this.digests()]);
    let matched = 0;
    for (const digest of configured) {
      let diff = 0;
      for (let i = 0; i < digest.length; i++) diff |= digest[i] ^ presented[i];
      matched |= diff === 0 ? 1 : 0;
    }
    return matched === 1;
  }

  /**
   * Plain keys are hashed on first use. The digests are kept, not the promise of them: a promise
   * made in one request and awaited in another is tied to the first request's lifetime in workerd.
   */
  private async digests(): Promise<Uint8Array[]> {
    this.#digests ??= await Promise.all(this.entries.map((entry) => (typeof entry === 'string' ? sha256(entry) : entry)));
    return this.#digests;
  }
}

/** A key as an error message may show it: never whole, as OpenAI shows a wrong key (`sk-****wxyz`). */
export function redactKey(key: string): string {
  return key.length >= 12 ? `${key.slice(0, 3)}****${key.slice(-4)}` : '****';
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}
