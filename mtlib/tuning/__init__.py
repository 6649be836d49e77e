"""Parameter-efficient fine-tuning, written out: one module per technique (chapters 06-11).

Every technique has a config dataclass and `apply(model, config)`, which changes a loaded model in place, leaves
exactly the technique's parameters and the task head trainable, and reports what it added; `common.save` and
`common.load` write and read only those weights. `TECHNIQUES` lists them (chapter 17 loops over it).
"""
from . import adapters, bitfit, common, layerwise, lora, prefix, prompt, task

# in the order of the chapters; DoRA is LoRA with `LoraConfig(use_dora=True)`
TECHNIQUES = {"layerwise": layerwise, "bitfit": bitfit, "adapters": adapters, "lora": lora, "prompt": prompt,
              "prefix": prefix}

__all__ = ["TECHNIQUES", "adapters", "bitfit", "common", "layerwise", "lora", "prefix", "prompt", "task"]
