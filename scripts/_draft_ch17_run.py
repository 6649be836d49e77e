# Development only (removed before landing): run chapter 17's code cells as a script against /tmp/ch17dev/fake.jsonl (make it with _draft_ch17_fake_store.py).
"""Run chapter 17's code cells as a script against the fake store (development only)."""
import sys, nbformat, re
nb = nbformat.read('book/en/17-everything-on-one-task.ipynb', 4)
src = []
for c in nb.cells:
    if c.cell_type != 'code':
        continue
    s = "\n".join(l if not l.lstrip().startswith("!") else l[:len(l)-len(l.lstrip())] + "pass" for l in c.source.splitlines())
    s = s.replace('store = Store()', 'store = Store("/tmp/ch17dev/fake.jsonl")')
    s = s.replace('plt.show()', 'plt.close("all")')
    src.append(s)
code = "\n\n".join(src)
import matplotlib; matplotlib.use('Agg')
g = {}
exec(compile(code, 'ch17', 'exec'), g)
