"""Prints the model-card tables (markdown) from training/runs/*/results.json."""
import json, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from configs import ORDER


def main():
    rs = []
    for n in ORDER:
        p = os.path.join(HERE, "runs", n, "results.json")
        if os.path.exists(p):
            rs.append(json.load(open(p)))
    print("| run | architecture | layers | active params (non-emb) | + embedding (tied) | memory params | total params | table bytes (fp16) | valid ppl | train tokens | train time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        c, p = r["config"], r["params"]
        print(f"| {r['name']} | {r['architecture']} | {c['num_hidden_layers']} | {p['active_non_embedding']:,} | "
              f"{p['active_non_embedding'] + p['embedding']:,} | {p['memory']:,} | {p['total']:,} | "
              f"{r['table_bytes_fp16']:,} | {r['valid_ppl']:.2f} | {r['train_tokens']:,} | {r['train_time_s'] / 60:.1f} min |")
    print()
    print("| run | intact | all memory rows zero | first half zero | second half zero |")
    print("|---|---|---|---|---|")
    for r in rs:
        a = r.get("ablation_rows_zero")
        if not a:
            continue
        f = lambda k: f"{a[k]['valid_ppl']:.2f} (layers {a[k]['layers'][0]}-{a[k]['layers'][-1]})" if a[k]["layers"] else f"{a[k]['valid_ppl']:.2f}"
        print(f"| {r['name']} | {f('none')} | {f('all')} | {f('first_half')} | {f('second_half')} |")
    if rs:
        print(f"\n(ablation on the first {rs[0].get('ablation_rows_zero', {}).get('tokens_scored', '?')} validation tokens)")


if __name__ == "__main__":
    main()
