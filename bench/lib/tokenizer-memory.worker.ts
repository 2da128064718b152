/**
 * A worker that only loads tokenizers and keeps them, for bench/lib/tokenizer-memory-workerd.ts:
 * POST /load?impl=library|compact with a tokenizer.json body.
 */
import { LibraryTokenizer } from '../../src/tokenizer/library-tokenizer.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';

const kept: { encode(text: string): number[] }[] = [];

/** Parses here, so the parsed JSON is garbage once this returns. */
function load(impl: string, text: string): { encode(text: string): number[] } {
  const json = JSON.parse(text) as object;
  return impl === 'library' ? new LibraryTokenizer(json) : new TextTokenizer(json);
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== '/load') return new Response('up');
    const tokenizer = load(url.searchParams.get('impl') ?? 'compact', await request.text());
    kept.push(tokenizer);
    return Response.json({ ids: tokenizer.encode('Hello <|endoftext|> world').length });
  },
};
