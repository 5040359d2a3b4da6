"""`mtx bench decode` JSON lines (stdin) as the markdown table of docs/performance.md: each row's sentences/s,
its ratio to CTranslate2's row of the same precision, shortlist and setting, BLEU, and whether its outputs equal
mtx fp32's.

    mtx bench decode --model M --engine mtx,ct2 --precision fp32,int8 --shortlist off,on \\
        --settings greedy,beam --rounds 3 | python scripts/decode_table.py
"""

import json
import sys


def main() -> None:
    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    key = lambda r: (r["precision"], r["shortlist"], r["setting"])  # noqa: E731
    ct2 = {key(r): r for r in rows if r["engine"] == "ct2"}
    ref = {r["setting"]: r for r in rows if r["engine"] == "mtx" and r["precision"] == "fp32" and not r["shortlist"]}
    print("| engine | precision | shortlist | setting | sent/s (rounds) | × ct2 | BLEU | = mtx fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["setting"], r["engine"], r["precision"], r["shortlist"])):
        other = ct2.get(key(r))
        ratio = f"{r['sents_per_s'] / other['sents_per_s']:.2f}" if other and r["engine"] == "mtx" else ""
        same = ref.get(r["setting"]) and ref[r["setting"]]["outputs_sha1"] == r["outputs_sha1"]
        rounds = ", ".join(f"{x:g}" for x in r["rounds_sents_per_s"])
        print(f"| {r['engine']} | {r['precision']} | {'on' if r['shortlist'] else 'off'} | {r['setting']} | "
              f"{r['sents_per_s']:g} ({rounds}) | {ratio} | {r['bleu']:.2f} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
