# Development only (removed before landing): a fake complete store from the shipped one, to run chapter 17's code before the store is full.
"""A fake complete store for developing chapter 17's code (never shipped)."""
import json, copy, random
from mtlib.store import Store
from mtlib.tuning.leaderboard import METHODS, PROBE
src = Store()
out = Store('/tmp/ch17dev/fake.jsonl')
rng = random.Random(0)
for r in src:
    out.add(r['key'], r['values'], r['provenance'])
ft = [r for r in src if r['key']['method'] == 'full fine-tuning']
for name, m in METHODS.items():
    if name == 'full fine-tuning':
        continue
    for r in ft:
        k = copy.deepcopy(r['key'])
        if k['steps'] == 800 or k['lr'] not in (3e-5, 1e-4, 3e-4):
            continue
        k['method'] = name; k['technique'] = m.technique; k['config'] = m.full_config()
        k['lr'] = m.rates[(3e-5, 1e-4, 3e-4).index(r['key']['lr'])]
        v = copy.deepcopy(r['values'])
        flip = rng.random() * 0.05
        v['test_correct'] = ''.join(c if rng.random() > flip else '0' for c in v['test_correct'])
        v['test_accuracy'] = v['test_correct'].count('1') / len(v['test_correct'])
        v['trainable'] = int(v['total'] * rng.choice([0.001, 0.003, 0.01, 0.05]))
        if out.get(k) is None:
            out.add(k, v, r['provenance'])
# full fine-tuning at 800: seeds 1 and 2 copied from seed 0
for r in ft:
    if r['key']['steps'] == 800 and r['key']['lr'] == 3e-5:
        for s in (1, 2):
            k = copy.deepcopy(r['key']); k['seed'] = s
            out.add(k, r['values'], r['provenance'])
print(len(out))
