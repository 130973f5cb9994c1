#!/usr/bin/env python3
"""Cross-check of cachefs's LRU against libCacheSim's (pip install libcachesim).

Usage: scripts/libcachesim-lru.py TRACE.keys.gz... > lru.tsv
Prints, per trace and per capacity of the default sweep (1%, 5%, 10%, 25% of unique keys, rounded as
`cachefs replay` rounds them), libCacheSim's LRU hit ratio in percent. Compare with
`cachefs replay TRACE --shards 1 --policy lru`.
"""
import gzip
import math
import os
import sys
import tempfile

import libcachesim as lcs


def main() -> None:
    print("trace\tcapacity\tentries\tlibcachesim_lru_hit_pct")
    for path in sys.argv[1:]:
        name = os.path.basename(path).removesuffix(".gz").removesuffix(".keys")
        with gzip.open(path, "rt") as f:
            keys = [line.strip() for line in f if line.strip()]
        unique = len(set(keys))
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tmp:
            tmp.write("\n".join(keys) + "\n")
        try:
            for pct in (1, 5, 10, 25):
                entries = max(1, math.floor(unique * pct / 100 + 0.5))  # Rust rounds half away from zero
                reader = lcs.TraceReader(tmp.name, lcs.TraceType.PLAIN_TXT_TRACE)
                miss_ratio, _ = lcs.LRU(entries).process_trace(reader)
                print(f"{name}\t{pct}%\t{entries}\t{100 * (1 - miss_ratio):.4f}")
        finally:
            os.unlink(tmp.name)


if __name__ == "__main__":
    main()
