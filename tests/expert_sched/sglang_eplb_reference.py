"""Run SGLang's own DeepSeek EPLB on cases read from a JSON file (stdin) and print its outputs.

Executed by test_eplb.py with the SGLang venv's python. Loads ``srt/eplb/eplb_algorithms/deepseek.py``
straight from the installed sglang package (it needs only torch), without importing sglang itself.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch

root = Path(importlib.util.find_spec("sglang").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("sglang_deepseek_eplb",
                                              root / "srt" / "eplb" / "eplb_algorithms" / "deepseek.py")
deepseek = importlib.util.module_from_spec(spec)
spec.loader.exec_module(deepseek)

out = []
for case in json.load(sys.stdin):
    phy2log, log2phy, logcnt = deepseek.rebalance_experts(
        torch.tensor(case["weight"]), case["num_physical"], case["num_groups"], case["num_nodes"],
        case["num_gpus"], case["hierarchical"])
    out.append({"phy2log": phy2log.tolist(), "log2phy": log2phy.tolist(), "logcnt": logcnt.tolist()})
json.dump(out, sys.stdout)
