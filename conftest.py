"""Test-wide settings: the suite runs offline.

Sockets may only connect to this machine (the website test serves pages on localhost; Jupyter kernels talk over
loopback). The notebook kernels that nbval starts inherit the same rule through `tests/offline/sitecustomize.py`.
"""
import os
import sys
from pathlib import Path

OFFLINE = Path(__file__).parent / "tests" / "offline"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OFFLINE), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(OFFLINE))
import sitecustomize  # noqa: E402,F401  (blocks non-loopback connections in this process too)
