"""Train the comparison runs (resumable).  One command:

    nice -n 10 /usr/bin/python3 training/train.py                 # all runs in ORDER, skipping finished ones
    nice -n 10 /usr/bin/python3 training/train.py --runs flex,meki

Every run sees exactly the same token windows in the same order (start offsets drawn once from a
fixed seed), with the same optimizer: AdamW(beta 0.9/0.95, wd 0.1 on matrices and tables, none on
norms/alpha/beta), peak lr 2e-3, linear warmup then cosine decay to 10%, grad-clip 1.0.
Single-threaded (torch.set_num_threads(1)).  State is saved every --save-every steps to
training/runs/<name>/state.pt; rerunning the command resumes.  When a run finishes it writes
training/runs/<name>/checkpoint/ (fp16, the documented format), evaluates that fp16 checkpoint on
training/data/valid.txt and writes training/runs/<name>/results.json.  flex and meki are also
copied to models/<name>/.
"""
import argparse, json, math, os, shutil, sys, time
# one core only: torch.set_num_threads(1) does not reach Debian's OpenBLAS thread pool
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bpe, corpus
from configs import ORDER, config
from model import Model, load_checkpoint, param_counts, save_checkpoint, table_bytes_fp16

TOK_DIR = os.path.join(HERE, "tokenizer")
CACHE = os.path.join(HERE, ".cache")
RUNS = os.path.join(HERE, "runs")
CTX = 256
SEED = 1234


def train_tokens():
    p = os.path.join(CACHE, "train_ids.npy")
    if not os.path.exists(p):
        os.makedirs(CACHE, exist_ok=True)
        tok = bpe.BPE.load(os.path.join(TOK_DIR, "tokenizer.json"))
        tr, _ = corpus.split()
        ids = []
        for _, t in tr:
            ids.extend(tok.encode(t)); ids.append(tok.eot_id)
        np.save(p, np.array(ids, dtype=np.uint16))
    return np.load(p)


def valid_tokens():
    tok = bpe.BPE.load(os.path.join(TOK_DIR, "tokenizer.json"))
    with open(os.path.join(HERE, "data", "valid.txt"), encoding="utf-8") as f:
        return np.array(tok.encode(f.read()), dtype=np.int64)


@torch.no_grad()
def evaluate(m, vids, zero_layers=(), batch=16, max_windows=None):
    """Perplexity on the validation stream: non-overlapping windows of CTX+1 tokens (stride CTX),
    every token after the first of each window is predicted; exp(mean NLL)."""
    m.eval()
    tables = m.memory_tables() if any(l.kind != "dense" for l in m.model.layers) else None
    n = (len(vids) - 1) // CTX
    if max_windows:
        n = min(n, max_windows)
    wins = np.stack([vids[i * CTX: i * CTX + CTX + 1] for i in range(n)])
    tot, cnt = 0.0, 0
    for i in range(0, n, batch):
        x = torch.from_numpy(wins[i:i + batch])
        logits = m(x[:, :-1], tables=tables, zero_layers=zero_layers)
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
        cnt += x[:, 1:].numel()
    return math.exp(tot / cnt), cnt


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def run(name, args, data, vids):
    out = os.path.join(args.runs_dir, name)
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, "results.json")):
        print(f"[{name}] already done"); return
    log = open(os.path.join(out, "train.log"), "a")

    def say(s):
        s = f"{time.strftime('%H:%M:%S')} [{name}] {s}"
        print(s, flush=True); log.write(s + "\n"); log.flush()

    torch.manual_seed(SEED)
    c = config(name)
    m = Model(c)
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in m.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(SEED)                       # identical windows for every run
    starts = rng.integers(0, len(data) - CTX - 1, size=(args.steps, args.batch))
    step, elapsed = 0, 0.0
    sp = os.path.join(out, "state.pt")
    if os.path.exists(sp):
        st = torch.load(sp)
        m.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); step, elapsed = st["step"], st["elapsed"]
        say(f"resumed at step {step}")
    pc = param_counts(m)
    say(f"params {pc}; {args.steps} steps x {args.batch} x {CTX} tokens")
    warm = max(1, args.steps // 20)
    m.train()
    t0 = time.time()
    while step < args.steps:
        idx = starts[step][:, None] + np.arange(CTX + 1)[None, :]
        x = torch.from_numpy(data[idx].astype(np.int64))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warm)
        logits = m(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0 or step == args.steps:
            say(f"step {step}/{args.steps} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{elapsed + time.time() - t0:.0f}s")
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"model": m.state_dict(), "opt": opt.state_dict(), "step": step,
                        "elapsed": elapsed + time.time() - t0}, sp)
    train_time = elapsed + time.time() - t0
    ck = os.path.join(out, "checkpoint")
    save_checkpoint(m, ck, TOK_DIR, dtype="F16")
    # evaluate the fp16 checkpoint exactly as saved
    mf = load_checkpoint(ck)
    te = time.time()
    ppl, ntok = evaluate(mf, vids, max_windows=args.eval_windows)
    res = {"name": name, "architecture": c.architecture, "config": c.to_json(), "params": pc,
           "table_bytes_fp16": table_bytes_fp16(c), "train_tokens": args.steps * args.batch * CTX,
           "steps": args.steps, "batch": args.batch, "context": CTX, "peak_lr": args.lr,
           "train_time_s": round(train_time, 1), "valid_tokens_scored": ntok, "valid_ppl": ppl,
           "final_train_loss": loss.item()}
    say(f"valid ppl {ppl:.3f} over {ntok} tokens (fp16 checkpoint)")
    mem = list(c.memory_layers)
    if mem:
        # ablations on a fixed prefix of the validation stream (the first --ablation-windows windows)
        h = len(mem) // 2
        nw = args.ablation_windows
        base, na = evaluate(mf, vids, max_windows=nw)
        abl = {"windows": nw, "tokens_scored": na, "none": {"layers": [], "valid_ppl": base}}
        say(f"ablation subset ({na} tokens) intact ppl {base:.3f}")
        for label, zl in (("all", mem), ("first_half", mem[:h]), ("second_half", mem[h:])):
            abl[label] = {"layers": zl, "valid_ppl": evaluate(mf, vids, zero_layers=set(zl), max_windows=nw)[0]}
            say(f"memory rows zeroed in {label} {zl}: ppl {abl[label]['valid_ppl']:.3f}")
        res["ablation_rows_zero"] = abl
    res["eval_time_s"] = round(time.time() - te, 1)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    if name in ("flex", "meki") and not args.no_copy:
        dst = os.path.join(ROOT, "models", name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(ck, dst)
        say(f"copied to {dst}")
    if os.path.exists(sp):
        os.remove(sp)
    say(f"done: train {train_time:.0f}s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=",".join(ORDER))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--eval-windows", type=int, default=None, help="limit full eval (smoke tests only)")
    ap.add_argument("--ablation-windows", type=int, default=256)
    ap.add_argument("--runs-dir", default=RUNS)
    ap.add_argument("--no-copy", action="store_true", help="do not copy flex/meki to models/")
    ap.add_argument("--bench", action="store_true", help="time 3 steps of every run and exit")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = train_tokens()
    print(f"train tokens available: {len(data)}", flush=True)
    if args.bench:
        for name in args.runs.split(","):
            m = Model(config(name)); opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
            rng = np.random.default_rng(0)
            for it in range(4):
                if it == 1: t0 = time.time()
                s = rng.integers(0, len(data) - CTX - 1, size=args.batch)
                x = torch.from_numpy(data[s[:, None] + np.arange(CTX + 1)].astype(np.int64))
                loss = F.cross_entropy(m(x[:, :-1]).reshape(-1, 4096), x[:, 1:].reshape(-1))
                opt.zero_grad(); loss.backward(); opt.step()
            dt = (time.time() - t0) / 3
            print(name, param_counts(m), f"{dt:.2f}s/step {args.batch * CTX / dt:.0f} tok/s", flush=True)
        return
    vids = valid_tokens()
    for name in args.runs.split(","):
        run(name, args, data, vids)


if __name__ == "__main__":
    main()
