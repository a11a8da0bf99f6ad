import json, sys
for f in sys.argv[1:]:
    d=json.load(open(f)); print(f, "load", d['loadavg_before'], d['loadavg_after'], d['seconds'],'s')
    for th in ('threads_1','threads_2'):
        if th not in d: continue
        for name, r in d[th]['ratio_vs_real'].items():
            s=[]
            for m in ('pp','tg'):
                p=r[m]['paired_pct']; s.append(f"{m} {p['median']:+5.1f}% [{p['q1']:+.1f},{p['q3']:+.1f}] {r[m]['faster_in_rounds']}/{d['rounds']}")
            print(f"  {th[-1]}t {name[:34]:34} "+"   ".join(s))
        sp=d[th]['spread']['real']; print(f"     real median pp {sp['pp']['median']:.1f} tg {sp['tg']['median']:.2f}")
