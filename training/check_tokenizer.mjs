// Checks that a tokenizer.json loads with @huggingface/tokenizers (the package flexmem uses) and
// round-trips the validation text exactly: decode(encode(text)) === text.
// Usage: node training/check_tokenizer.mjs [tokenizer_dir] [text_file] [expected_ids.json]
// (expected_ids.json, optional: the ids the Python trainer produced, to prove both tokenize alike)
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? join(here, 'tokenizer');
const textFile = process.argv[3] ?? join(here, 'data', 'valid.txt');
const tokJson = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
let cfg = { clean_up_tokenization_spaces: false };
try { cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')); } catch {}
const tok = new Tokenizer(tokJson, cfg);
const text = readFileSync(textFile, 'utf8');
const vocab = tok.get_vocab(true);
const t0 = performance.now();
const { ids } = tok.encode(text, { add_special_tokens: false });
const back = tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
const ms = performance.now() - t0;
let ok = back === text;
console.log(`vocab ${vocab.size}, ${text.length} chars -> ${ids.length} tokens in ${ms.toFixed(0)} ms; round trip ${ok ? 'exact' : 'DIFFERS'}`);
if (!ok) {
  let i = 0; while (i < text.length && text[i] === back[i]) i++;
  console.log('first difference at char', i, JSON.stringify(text.slice(i - 20, i + 20)), JSON.stringify(back.slice(i - 20, i + 20)));
}
if (process.argv[4]) {
  const exp = JSON.parse(readFileSync(process.argv[4], 'utf8'));
  const same = exp.length === ids.length && exp.every((v, i) => v === ids[i]);
  console.log(`ids equal to the Python encoder's: ${same}`);
  ok = ok && same;
}
const eot = tok.token_to_id('<|endoftext|>');
console.log(`<|endoftext|> id ${eot}`);
process.exit(ok ? 0 : 1);
