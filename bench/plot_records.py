"""Size / test error of the whole-model MNIST records (bench/results/*.json, from `weightless
record`) beside published whole-model results: docs/img/records.png; and the per-tensor table
of docs/RESULTS.md (codec chosen, candidates, information bound, DC-style, CSR + zstd), printed.

    python3 bench/plot_records.py [--out docs/img/records.png]

Published figures (whole model, MNIST test error), as their papers state them: Deep
Compression (Han et al. 2016), Weightless (Reagen et al. 2018; the 4.52 kB figure as quoted
by later work), soft weight-sharing (Ullrich et al. 2017), Bayesian Compression (Louizos et al.
2017) and MIRACLE (Havasi et al. 2019). Sizes are the float32 model divided by the compression
factor where a paper gives only the factor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DENSE = {"lenet-300-100": 1_066_440, "lenet-5": 1_724_320}  # float32 bytes of the models

# (method, model, compression factor, test error)
PUBLISHED = [
    ("Deep Compression", "lenet-300-100", 40, 0.0158),
    ("Deep Compression", "lenet-5", 39, 0.0074),
    ("soft weight-sharing", "lenet-300-100", 64, 0.0194),
    ("soft weight-sharing", "lenet-5", 162, 0.0097),
    ("Weightless (paper)", "lenet-5", 382, 0.0100),
    ("Bayesian Compression", "lenet-5", 771, 0.0100),
    ("MIRACLE", "lenet-5", 1110, 0.0096),
    ("MIRACLE", "lenet-5", 555, 0.0069),
]


def table(record: dict) -> str:
    """docs/RESULTS.md's per-tensor table of one record file."""
    pct = lambda a: f"{100 * a:.2f}%"  # noqa: E731
    lines = ["| tensor | kept | clusters | stored as | bytes | candidates (bytes, held-out accuracy) "
             "| information bound | DC-style 5-bit / best | CSR + zstd |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [(L["name"], L) for L in record["layers"]] + list(record["biases"].items())
    kinds = {t["name"]: t for t in record["tensors"]}
    for name, L in sorted(rows, key=lambda r: [t["name"] for t in record["tensors"]].index(r[0])):
        kept = f"{L['kept']:,} ({pct(L['density'])})" if "kept" in L else "all"
        codec = L.get("codec", "exact")
        if codec == "bloomier":
            codec = f"filter, t = {L['options']['cell_bits']}"
        tried = "; ".join(("exact" if c["codec"] == "exact" else f"t = {c['cell_bits']}") + f" {c['bytes']:,}"
                          + (f" ({pct(c['holdout_accuracy'])})" if "holdout_accuracy" in c else "")
                          for c in L.get("candidates", [])) or "-"
        lines.append(f"| {name} | {kept} | {L['clusters']} | {codec} | {kinds[name]['bytes']:,} | {tried} "
                     f"| {L['information_bound_bytes']:,.0f} | {L['dc_bytes_5bit_index']:,} / {L['dc_bytes']:,} "
                     f"| {L['csr_zstd_bytes']:,} |")
    wl = record["wl"]
    lines.append(f"\nWhole file {wl['bytes']:,} bytes ({wl['compression']:.0f}x), of which payloads "
                 f"{wl['payload_bytes']:,}; test accuracy from the file {pct(wl['accuracy']['test'])} "
                 f"(baseline {pct(record['baseline']['test'])}, after surgery {pct(record['pruned']['test'])}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img" / "records.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    for ax, model in zip(axes, ("lenet-5", "lenet-300-100")):
        everyone = sorted({m for m, _, _, _ in PUBLISHED})  # one colour per method in both panels
        for method in sorted({m for m, mod, _, _ in PUBLISHED if mod == model}):
            i = everyone.index(method)
            pts = [(DENSE[model] / f / 1000, 100 * e) for m, mod, f, e in PUBLISHED if mod == model and m == method]
            ax.scatter(*zip(*pts), marker="s", color=f"C{i + 1}", label=method)
        record = RESULTS / f"{model}.json"
        if record.exists():
            r = json.loads(record.read_text())
            print(f"### {model}\n\n{table(r)}\n")
            ax.scatter([r["wl"]["bytes"] / 1000], [100 * (1 - r["wl"]["accuracy"]["test"])], marker="*", s=160,
                       color="C0", label="weightless (this repo)", zorder=3)
            ax.axvline(r["targets"]["bytes"] / 1000, color="gray", ls=":", lw=0.8)
            ax.axhline(100 * (1 - r["targets"]["accuracy"]), color="gray", ls=":", lw=0.8)
        ax.set_xscale("log")
        ticks = [t for t in (1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("whole model (kB, log)")
        ax.set_ylabel("test error (%)")
        ax.set_title(model, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
