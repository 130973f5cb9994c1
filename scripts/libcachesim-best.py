#!/usr/bin/env python3
"""The reference column of docs/hit-ratio.md: libCacheSim's best of seven classic policies per cell.

Usage: pip install libcachesim; scripts/libcachesim-best.py TRACE.keys.gz... > best-of-7.tsv
Prints, per trace and per capacity of the default sweep (1%, 5%, 10%, 25% of unique keys, floor(unique × N /
100) entries as `cachefs replay` counts them), the hit ratio in percent of LRU, LFU, ARC, LIRS, S3-FIFO,
W-TinyLFU and SIEVE as libCacheSim implements them (every object size 1), then the best of the seven and
which policy it was.
"""
import gzip
import math
import os
import sys
import tempfile

import libcachesim as lcs

POLICIES = [
    ("lru", lcs.LRU),
    ("lfu", lcs.LFU),
    ("arc", lcs.ARC),
    ("lirs", lcs.LIRS),
    ("s3fifo", lcs.S3FIFO),
    ("wtinylfu", lcs.WTinyLFU),
    ("sieve", lcs.Sieve),
]


def main() -> None:
    names = [n for n, _ in POLICIES]
    print("\t".join(["trace", "capacity", "entries", *names, "best", "best_policy"]))
    for path in sys.argv[1:]:
        name = os.path.basename(path).removesuffix(".gz").removesuffix(".keys")
        with gzip.open(path, "rt") as f:
            keys = [line.strip() for line in f if line.strip()]
        unique = len(set(keys))
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tmp:
            tmp.write("\n".join(keys) + "\n")
        try:
            for pct in (1, 5, 10, 25):
                entries = max(1, math.floor(unique * pct / 100))
                hits = []
                for _, policy in POLICIES:
                    reader = lcs.TraceReader(tmp.name, lcs.TraceType.PLAIN_TXT_TRACE)
                    miss_ratio, _ = policy(entries).process_trace(reader)
                    hits.append(100 * (1 - miss_ratio))
                best = max(range(len(hits)), key=lambda i: hits[i])
                cells = [f"{h:.4f}" for h in hits]
                print("\t".join([name, f"{pct}%", str(entries), *cells, f"{hits[best]:.4f}", names[best]]))
                sys.stdout.flush()
        finally:
            os.unlink(tmp.name)


if __name__ == "__main__":
    main()
