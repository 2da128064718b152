"""Byte-level BPE: a small trainer and encoder, saved as a Hugging Face tokenizer.json.

Pre-tokenization is exactly the HF ByteLevel pre-tokenizer (add_prefix_space=false, use_regex=true):
the GPT-2 regex splits text into words, each word's UTF-8 bytes are mapped to printable unicode
characters (bytes_to_unicode), and BPE runs inside each word.  Training: start from the 256 byte
symbols, repeatedly merge the most frequent adjacent pair (ties -> lexicographically smallest pair)
until the vocabulary has `vocab_size - 1` entries; the last id is the special token <|endoftext|>.
After training, ids are re-assigned by descending token frequency on the training corpus
(id 0 = most frequent token), so a "hot set" is simply the lowest ids.

Usage: python3 bpe.py [--vocab 4096] [--out training/tokenizer]
"""
import argparse, heapq, json, os, sys
from collections import Counter, defaultdict
import regex

GPT2_PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOT = "<|endoftext|>"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()
U2B = {u: b for b, u in B2U.items()}


def pretokenize(text):
    return ["".join(B2U[b] for b in w.encode("utf-8")) for w in GPT2_PAT.findall(text)]


def train(texts, vocab_size):
    wc = Counter()
    for t in texts:
        wc.update(pretokenize(t))
    words = [list(w) for w in wc]
    counts = [wc[w] for w in wc]
    pc = defaultdict(int)
    where = defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pc[p] += counts[i]; where[p].add(i)
    heap = [(-c, p) for p, c in pc.items()]
    heapq.heapify(heap)
    merges = []
    n_merges = vocab_size - 1 - 256
    while len(merges) < n_merges and heap:
        c, p = heapq.heappop(heap)
        if pc.get(p, 0) != -c or c == 0:
            continue  # stale heap entry
        merges.append(p)
        a, b = p; ab = a + b
        changed = set()
        for i in list(where[p]):
            w = words[i]
            if len(w) < 2:
                continue
            # merge left to right
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(ab); j += 2
                else:
                    nw.append(w[j]); j += 1
            if len(nw) == len(w):
                continue
            cnt = counts[i]
            for q in zip(w, w[1:]):
                pc[q] -= cnt; changed.add(q)
            for q in zip(nw, nw[1:]):
                pc[q] += cnt; where[q].add(i); changed.add(q)
            words[i] = nw
        del pc[p]; where.pop(p, None)
        for q in changed:
            if q in pc:
                if pc[q] <= 0:
                    del pc[q]
                else:
                    heapq.heappush(heap, (-pc[q], q))
        if len(merges) % 500 == 0:
            print(f"  {len(merges)} merges, last {a!r}+{b!r} count {-c}", file=sys.stderr)
    return merges, wc


class BPE:
    """Encoder with the same algorithm as HF's BPE model: within a word, repeatedly apply the
    lowest-rank merge present."""

    def __init__(self, vocab, merges):
        self.vocab = vocab  # token -> id (without the special)
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.cache = {}
        self.eot_id = len(vocab)

    def word(self, w):
        r = self.cache.get(w)
        if r is not None:
            return r
        syms = list(w)
        while len(syms) > 1:
            best, bi = None, -1
            for i in range(len(syms) - 1):
                rk = self.ranks.get((syms[i], syms[i + 1]))
                if rk is not None and (best is None or rk < best):
                    best, bi = rk, i
            if best is None:
                break
            a, b = syms[bi], syms[bi + 1]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b); i += 2
                else:
                    out.append(syms[i]); i += 1
            syms = out
        r = [self.vocab[s] for s in syms]
        self.cache[w] = r
        return r

    def encode(self, text):
        """Encode text; the literal <|endoftext|> is split out as the special id (like HF added tokens)."""
        ids = []
        for k, part in enumerate(text.split(EOT)):
            if k:
                ids.append(self.eot_id)
            for w in pretokenize(part):
                ids.extend(self.word(w))
        return ids

    def decode(self, ids):
        inv = {i: t for t, i in self.vocab.items()}
        out = bytearray()
        for i in ids:
            if i == self.eot_id:
                out += EOT.encode()
            else:
                out += bytes(U2B[c] for c in inv[i])
        return out.decode("utf-8", errors="replace")

    @staticmethod
    def load(path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        return BPE(j["model"]["vocab"], [tuple(m) for m in j["model"]["merges"]])


def build(texts, vocab_size):
    merges, wc = train(texts, vocab_size)
    tokens = [B2U[b] for b in range(256)] + [a + b for a, b in merges]
    assert len(set(tokens)) == len(tokens) == vocab_size - 1
    # frequency of each token when the training corpus is encoded with the final merges
    tmp = BPE({t: i for i, t in enumerate(tokens)}, merges)
    freq = Counter()
    for w, c in wc.items():
        for i in tmp.word(w):
            freq[i] += c
    order = sorted(range(len(tokens)), key=lambda i: (-freq[i], i))
    vocab = {tokens[i]: rank for rank, i in enumerate(order)}
    return vocab, merges


def tokenizer_json(vocab, merges):
    eot_id = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eot_id, "content": EOT, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
                  "merges": [[a, b] for a, b in merges]},
    }


TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": EOT, "eos_token": EOT, "unk_token": None,
    "add_prefix_space": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 256,
}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import corpus
    train_docs, valid_docs = corpus.split()
    vocab, merges = build([t for _, t in train_docs], args.vocab)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False)
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=1)
    vt = corpus.valid_text(valid_docs)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "valid.txt"), "w", encoding="utf-8") as f:
        f.write(vt)
    bpe = BPE(vocab, merges)
    ids = bpe.encode(vt)
    assert bpe.decode(ids) == vt
    print(f"vocab {len(vocab) + 1}, valid.txt {len(vt)} chars -> {len(ids)} tokens ({len(vt) / len(ids):.2f} chars/token)")
