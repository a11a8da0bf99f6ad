import json,sys
r=json.load(open(sys.argv[1]))
print("load", r["loadavg_before"], r["loadavg_after"], "s", r["seconds"], "repack", r["repack"], "mmap", r["mmap"])
for k,b in r.items():
    if not k.startswith("threads_"): continue
    for name, s in b["spread"].items():
        print(k, f"{name:<30}", " ".join(f"{m} {s[m]['median']:.1f}[{s[m]['q1']:.1f}-{s[m]['q3']:.1f}]" for m in ("pp","tg","pp_cpu","tg_cpu")))
    for name, rr in next(v for kk,v in b.items() if kk.startswith("ratio")).items():
        print(k, f"{name:<30}", " ".join(f"{m} {rr[m]['median_of_medians_pct']:+.1f}% paired {rr[m]['paired_pct']['median']:+.1f}[{rr[m]['paired_pct']['q1']:+.1f},{rr[m]['paired_pct']['q3']:+.1f}] w{rr[m]['faster_in_rounds']}" for m in ("pp","tg","pp_cpu","tg_cpu")))
