#!/usr/bin/env python3
"""Synthetic traces for checking the default policy on loads it was not tuned on (docs/hit-ratio.md).

Usage: scripts/synthetic-traces.py held-out DIR   (six traces, h_*.keys.gz)
       scripts/synthetic-traces.py validation DIR (five traces, v_*.keys.gz)

Deterministic (fixed seeds). The held-out set checked the miniature simulation's parameters; the
validation set was generated afterwards and measured once. Each line of a trace is one u64 key, as
`cachefs replay` and scripts/libcachesim-best.py read them.
"""
import bisect
import gzip
import os
import random
import sys


def zipf_sampler(n, a, rng):
    cdf, total = [], 0.0
    for i in range(n):
        total += 1 / (i + 1) ** a
        cdf.append(total)
    return lambda: bisect.bisect_left(cdf, rng.random() * total)


def write(out_dir, name, keys):
    with gzip.open(os.path.join(out_dir, f"{name}.keys.gz"), "wt") as f:
        f.write("\n".join(map(str, keys)) + "\n")


def held_out(out_dir):
    rng = random.Random(2026)
    perm = lambda k: (k * 2654435761) % (1 << 40)
    # Zipf(0.9) over 50k keys, a scan of 5,000 new keys every 20,000 accesses.
    z, out, nxt = zipf_sampler(50000, 0.9, rng), [], 10**9
    for i in range(300000):
        out.append(perm(z()))
        if i % 20000 == 19999:
            out.extend(range(nxt, nxt + 5000))
            nxt += 5000
    write(out_dir, "h_zipf_scan", out)
    # A hot set of 2,000 keys drifting by one key every 50 accesses.
    z = zipf_sampler(2000, 0.8, rng)
    write(out_dir, "h_drift", [perm(i // 50 + z()) for i in range(300000)])
    # A loop over 6,000 keys interleaved with Zipf(1.0) over 20,000.
    z, out, j = zipf_sampler(20000, 1.0, rng), [], 0
    for i in range(300000):
        if i % 2:
            out.append(10**9 + j % 6000)
            j += 1
        else:
            out.append(perm(z()))
    write(out_dir, "h_loop_zipf", out)
    # Zipf(0.7) phases of 50,000 accesses on disjoint key ranges.
    z = zipf_sampler(10000, 0.7, rng)
    write(out_dir, "h_phases", [perm((i // 50000) * 100000 + z()) for i in range(300000)])
    # 80% of accesses uniform over 4,000 keys, 20% over 16,000 others.
    out = []
    for _ in range(300000):
        out.append(perm(rng.randrange(4000) if rng.random() < 0.8 else 4000 + rng.randrange(16000)))
    write(out_dir, "h_80_20", out)
    # Short bursts (2-5 reads) of new keys over a small Zipf(0.9) background.
    z, out, live, nxt = zipf_sampler(3000, 0.9, rng), [], [], 10**10
    for _ in range(300000):
        r = rng.random()
        if r < 0.3:
            out.append(perm(z()))
        elif r < 0.4 or not live:
            live.append([nxt, rng.randrange(2, 6)])
            nxt += 1
            out.append(live[-1][0])
        else:
            k = rng.randrange(len(live))
            out.append(live[k][0])
            live[k][1] -= 1
            if live[k][1] <= 0:
                live.pop(k)
        if len(live) > 400:
            live.pop(0)
    write(out_dir, "h_bursts", out)


def validation(out_dir):
    rng = random.Random(777)
    perm = lambda k: (k * 11400714819323198485 >> 20) % (1 << 44)
    # LRU stack-depth model: heavy-tailed reuse distances (recency-dominated).
    stack, out, nxt = [], [], 0
    for _ in range(250000):
        if stack and rng.random() < 0.85:
            d = min(int(rng.paretovariate(0.6)), len(stack)) - 1
            k = stack.pop(len(stack) - 1 - d)
            stack.append(k)
            out.append(perm(k))
        else:
            stack.append(nxt)
            out.append(perm(nxt))
            nxt += 1
        if len(stack) > 30000:
            stack.pop(0)
    write(out_dir, "v_stack_depth", out)
    # Three tenants, Zipf 0.6 / 0.9 / 1.2 over disjoint key spaces, mixed 2:1:1.
    zs = [zipf_sampler(30000, 0.6, rng), zipf_sampler(10000, 0.9, rng), zipf_sampler(3000, 1.2, rng)]
    write(out_dir, "v_tenants", [perm(t * 10**6 + zs[t]()) for t in (rng.choice((0, 0, 1, 2)) for _ in range(300000))])
    # Web-like: Zipf(0.7) over 100k keys, 30% one-hit wonders.
    z, out, nxt = zipf_sampler(100000, 0.7, rng), [], 10**12
    for _ in range(300000):
        if rng.random() < 0.3:
            out.append(nxt)
            nxt += 1
        else:
            out.append(perm(z()))
    write(out_dir, "v_web", out)
    # Database-like: hot index pages (Zipf 1.0 over 2,000), every third run of 1,000 a table scan.
    z, out, pos = zipf_sampler(2000, 1.0, rng), [], 0
    for i in range(300000):
        if (i // 1000) % 3 == 2:
            out.append(10**8 + pos % 40000)
            pos += 1
        else:
            out.append(perm(z()))
    write(out_dir, "v_db_scan", out)
    # Popularity rotating by 100 keys every 10,000 accesses.
    z = zipf_sampler(20000, 0.9, rng)
    write(out_dir, "v_rotate", [perm((z() + (i // 10000) * 100) % 60000) for i in range(300000)])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("held-out", "validation"):
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    (held_out if sys.argv[1] == "held-out" else validation)(sys.argv[2])
