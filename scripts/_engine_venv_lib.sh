# Shared helpers for scripts/setup_vllm.sh and scripts/setup_sglang.sh (sourced, not run).
#
# Both engines live in their own virtual environments under .venvs/ at the repository root,
# built from Python 3.11 and the CPU build of torch 2.13.0 found on disk (/opt/wheels) or on PyPI.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_VERSION="2.13.0+cpu"
# CPU wheels of torch are published on PyTorch's own index; PIP_FIND_LINKS=/opt/wheels (or the
# variable TORCH_WHEEL) points pip at a wheel on disk instead.
TORCH_WHEEL="${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -n1 || true)}"

say() { printf '[%s] %s\n' "$(basename "$0")" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# find_python: print a Python 3.11 interpreter (PYTHON overrides), or die.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    die "no Python 3.11 found (set PYTHON=/path/to/python3.11)"
}

# make_venv DIR: create a fresh virtualenv at DIR (removing a broken one) and upgrade pip in it.
make_venv() {
    local dir="$1" python
    python="$(find_python)"
    if [ -d "$dir" ]; then
        say "removing $dir (failed the check, or FORCE=1)"
        rm -rf "$dir"
    fi
    say "creating $dir with $python"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
}

# install_cpu_torch VENV: install torch 2.13.0+cpu, from the wheel on disk when there is one.
install_cpu_torch() {
    local venv="$1"
    if [ -n "$TORCH_WHEEL" ] && [ -f "$TORCH_WHEEL" ]; then
        say "installing CPU torch from $TORCH_WHEEL"
        "$venv/bin/pip" install "$TORCH_WHEEL"
    else
        say "installing CPU torch $TORCH_VERSION from the PyTorch CPU index"
        "$venv/bin/pip" install "torch==$TORCH_VERSION" --extra-index-url https://download.pytorch.org/whl/cpu
    fi
}

# remove_cuda_extras VENV: uninstall PyPI's CUDA-linked companions that break imports on a CPU box.
remove_cuda_extras() {
    local venv="$1"
    say "uninstalling CUDA-linked torchvision/torchaudio/torchcodec/triton (not needed for text)"
    "$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec triton 2>&1 | grep -v '^WARNING: Skipping' || true
}

# site_packages VENV: print the venv's site-packages directory.
site_packages() {
    "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

# timed LABEL CMD...: run CMD and report how long it took.
timed() {
    local label="$1" start end
    shift
    start=$(date +%s)
    "$@"
    end=$(date +%s)
    say "$label took $((end - start)) s"
}
