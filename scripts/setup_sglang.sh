#!/usr/bin/env bash
# Build .venvs/sglang: SGLang 0.5.23 for CPU runs (the "light install"), plus this project and the
# stock sglang-router 0.3.2 (a baseline router).
#
#   1. torch 2.13.0+cpu, then the pinned closure scripts/sglang-0.5.23-cpu-requirements.txt with
#      --no-deps (a plain `pip install sglang` pulls CUDA torch, sglang-kernel, flashinfer: 11 GB);
#   2. if PyPI's CUDA-linked torchvision does not import, a start-up hook (.pth) that lets its
#      pure-Python parts import (scripts/torchvision_cpu_hook.py; its C ops stay unavailable);
#   3. `pip install -e '<repo>[dev]'` with its own dependencies, so SGLang's plugin entry point
#      sglang.srt.plugins -> moesched = sglang_patches.plugin:load is registered in this venv and
#      `make test-sglang` can run pytest there;
#   4. sglang-router==0.3.2.
# A CPU server also needs the sgl_kernel stand-in from tests/support (PYTHONPATH; see
# experiments/engines). Idempotent: an environment that passes the check is left alone (FORCE=1).
source "$(dirname "${BASH_SOURCE[0]}")/_engine_venv_lib.sh"

SGLANG_VERSION="0.5.23"
ROUTER_VERSION="0.3.2"
VENV="${SGLANG_VENV:-$REPO_ROOT/.venvs/sglang}"
REQUIREMENTS="$REPO_ROOT/scripts/sglang-$SGLANG_VERSION-cpu-requirements.txt"
HOOK_SOURCE="$REPO_ROOT/scripts/torchvision_cpu_hook.py"
HOOK_MODULE="_moesched_torchvision_cpu_hook"

# sglang_env_ok: succeed if $VENV is complete; otherwise print the first problem on stderr.
sglang_env_ok() {
    [ -x "$VENV/bin/python" ] || { echo "no $VENV/bin/python" >&2; return 1; }
    # -I: neither the working directory nor PYTHON* variables may shadow what is installed.
    HF_HUB_OFFLINE=1 "$VENV/bin/python" -I - <<PY
import importlib.metadata as md, json, sys
import torch, torchvision, sglang, sglang_router  # all must import on the CPU
import pytest, hypothesis  # make test-sglang runs the suite in this venv
eps = [ep.value for ep in md.entry_points(group="sglang.srt.plugins") if ep.name == "moesched"]
direct = json.loads(md.distribution("moesched").read_text("direct_url.json") or "{}")
problems = [
    f"{name} is {found}, expected {wanted}" for name, found, wanted in (
        ("sglang", md.version("sglang"), "$SGLANG_VERSION"),
        ("sglang-router", md.version("sglang-router"), "$ROUTER_VERSION"),
        ("torch", torch.__version__, "$TORCH_VERSION"),
        ("moesched entry points", eps, ["sglang_patches.plugin:load"]),
        ("moesched install", direct.get("url", "").rstrip("/"), "file://$REPO_ROOT"),
    ) if found != wanted
]
if problems:
    sys.exit("; ".join(problems))
PY
}

install_torchvision_hook_if_needed() {
    if "$VENV/bin/python" -c 'import torchvision' 2>/dev/null; then
        say "torchvision imports as is; no start-up hook needed"
        return 0
    fi
    local site
    site="$(site_packages "$VENV")"
    say "torchvision does not import (CUDA-linked build): installing start-up hook $HOOK_MODULE.pth"
    cp "$HOOK_SOURCE" "$site/$HOOK_MODULE.py"
    printf 'import %s\n' "$HOOK_MODULE" > "$site/$HOOK_MODULE.pth"
    "$VENV/bin/python" -c 'import torchvision' || die "torchvision still fails to import with the hook"
}

main() {
    [ -f "$REQUIREMENTS" ] || die "missing $REQUIREMENTS"
    if [ "${FORCE:-0}" != "1" ] && sglang_env_ok 2>/dev/null; then
        say "$VENV already has sglang $SGLANG_VERSION, sglang-router $ROUTER_VERSION and moesched from $REPO_ROOT; nothing to do"
        return 0
    fi
    make_venv "$VENV"
    install_cpu_torch "$VENV"
    say "installing the pinned CPU closure of sglang $SGLANG_VERSION (--no-deps)"
    "$VENV/bin/pip" install --no-deps -r "$REQUIREMENTS"
    install_torchvision_hook_if_needed
    say "installing this project (editable, with its dependencies and [dev] test tools) from $REPO_ROOT"
    "$VENV/bin/pip" install -e "$REPO_ROOT[dev]"
    say "installing sglang-router==$ROUTER_VERSION"
    "$VENV/bin/pip" install "sglang-router==$ROUTER_VERSION"
    sglang_env_ok || die "$VENV failed the final check (see the line above)"
    say "done: $VENV ($(du -sh "$VENV" | cut -f1))"
}

timed "setup_sglang.sh" main
