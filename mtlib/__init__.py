"""mtlib: the companion package of the book "Model Migration" (adapting pretrained language models).

One module, one job: `runtime` (profiles, `setup`), `cache` (first uses, safe when processes start at once), `zoo`
(checkpoints per role), `data` (the data registry), `train` (the training loop), `metrics`, `params`, `plot`,
`notebook` (glue); and for Part I: `attention`, `pretrain` (masked-LM further pretraining), `freeze` (freezing by
name), `pooling` (last-token pooling), `measure` (time and peak memory); for chapter 17: `store` (the results
store) and `forgetting` (what a tuned body lost).
"""
from . import (attention, cache, data, forgetting, freeze, measure, metrics, notebook, params, plot, pooling, pretrain,
               runtime, store, train, zoo)
from .notebook import glue
from .runtime import Config, setup

__version__ = "0.1.0"
__all__ = ["Config", "setup", "glue", "notebook", "cache", "data", "metrics", "params", "plot", "runtime", "train",
           "zoo", "attention", "freeze", "measure", "pooling", "pretrain", "store", "forgetting"]
