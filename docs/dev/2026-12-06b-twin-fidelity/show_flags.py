"""op-flags.json as a table: per phase and op, evaluations raising DE / UE / IE per model."""

import json
import sys
from pathlib import Path

d = json.loads(Path(sys.argv[1]).read_text())
models = list(d)
for phase in ("pp", "tg"):
    keys = sorted({k for m in models for k in d[m][phase]})
    print(f"\n{phase}: evals, DE/UE/IE evals, subnormal f32 / f16-range outputs, per model")
    print(f"{'op name':40}" + "".join(f"{Path(m).name[:30]:>32}" for m in models))
    for k in keys:
        cells, show = [], False
        for m in models:
            r = d[m][phase].get(k)
            if r is None:
                cells.append(f"{'-':>32}")
                continue
            show |= bool(r["DE"] or r["UE"] or r["IE"] or r.get("sub32"))
            flags = f"{r['DE']:4}/{r['UE']:4}/{r['IE']:4}"
            subs = f"{r.get('sub32', 0):3} {r.get('sub16', 0):6}"
            cells.append(f"{r['evals']:5} {flags} {subs}".rjust(32))
        if show:
            print(f"{k[:40]:40}" + "".join(cells))
