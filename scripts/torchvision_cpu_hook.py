"""Start-up hook that lets PyPI's CUDA-linked torchvision import on a CPU-only torch.

Installed by scripts/setup_sglang.sh into .venvs/sglang's site-packages as
``_moesched_torchvision_cpu_hook.py`` with a ``.pth`` file importing it, and only when
``import torchvision`` fails there. torchvision's ``__init__`` imports two modules that register
fake/autograd kernels for its C ops (``torchvision::nms`` ...); against a CPU torch without those ops
they raise "operator torchvision::nms does not exist". This finder answers those two imports with
empty modules, so torchvision's pure-Python parts (which SGLang and transformers import) load. Its C
ops stay unavailable; text-only serving never calls them.
"""

import importlib.abc
import importlib.machinery
import sys

_SKIPPED = frozenset({"torchvision._meta_registrations", "torchvision._autograd_registrations"})


class _EmptyModuleLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # default module creation

    def exec_module(self, module):
        module.__doc__ = "Left empty by _moesched_torchvision_cpu_hook: torchvision's C ops are unavailable."


class _SkipOpRegistrations(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in _SKIPPED:
            return importlib.machinery.ModuleSpec(fullname, _EmptyModuleLoader())
        return None


if not any(isinstance(finder, _SkipOpRegistrations) for finder in sys.meta_path):
    sys.meta_path.insert(0, _SkipOpRegistrations())
