#!/usr/bin/env bash
# llama.cpp for lmforge's fast engine, built once per machine and reused by every venv, clone and CI run on it:
#   scripts/llama_cpp.sh PYTHON
# 1. The shared libraries (and llama-server, the serving peer of bench/serve_load.py) from the llama.cpp source
#    vendored in the llama-cpp-python sdist, built for this CPU (GGML_NATIVE), into
#    ${LMFORGE_CACHE:-~/.cache/lmforge}/llama.cpp/<version>-<hash of the CPU's flags>, once (4 min on a 2-core EPYC).
# 2. llama-cpp-python of the same version installed into PYTHON's environment without building llama.cpp
#    (CMAKE_ARGS=-DLLAMA_BUILD=OFF: seconds), its lib/ folder linked to the cached build (no LLAMA_CPP_LIB_PATH).
# Why not a prebuilt wheel: see docs/llama_cpp.md.
set -euo pipefail
PYTHON=${1:?usage: scripts/llama_cpp.sh PYTHON}
VERSION=0.3.36  # llama-cpp-python; its ctypes bindings match the llama.cpp it vendors, and only that one
CPU_KEY=$(grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-10)  # a native build runs only on this ISA
CACHE=${LMFORGE_CACHE:-$HOME/.cache/lmforge}/llama.cpp/$VERSION-$CPU_KEY

missing=$(for tool in cmake c++; do command -v "$tool" >/dev/null || echo "$tool"; done)
if [ ! -f "$CACHE/lib/libllama.so" ] && [ -n "$missing" ]; then
    echo "lmforge: llama.cpp not installed: building it needs $(echo $missing) (Debian: apt-get install cmake" \
         "g++ ninja-build); until then decode.engine auto decodes on torch (docs/llama_cpp.md)" >&2
    exit 0
fi
generator=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")

if [ ! -f "$CACHE/lib/libllama.so" ]; then
    echo "building llama.cpp $VERSION for this CPU into $CACHE (once per machine: minutes)" >&2
    work=$(mktemp -d "${TMPDIR:-/tmp}/lmforge-llama-cpp.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$VERSION"
    tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
    source=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
    cmake -S "$source" -B "$work/build" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_NATIVE=ON -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$work/build" --target llama llama-server -j "$(nproc)"
    mkdir -p "$work/out/lib"  # libraries and llama-server side by side: their run paths are $ORIGIN
    find "$work/build" -name '*.so*' -exec cp -P {} "$work/out/lib/" \;
    cp "$work/build/bin/llama-server" "$work/out/lib/"
    mkdir -p "$(dirname "$CACHE")"
    rm -rf "$CACHE.partial" && mv "$work/out" "$CACHE.partial" && mv "$CACHE.partial" "$CACHE"  # whole or absent
fi

if ! "$PYTHON" -c "import llama_cpp" 2>/dev/null; then
    CMAKE_ARGS="-DLLAMA_BUILD=OFF" "$PYTHON" -m pip install -q "llama-cpp-python==$VERSION"
fi
package=$("$PYTHON" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llama_cpp').origin).parent)")
mkdir -p "$package/lib"
for library in "$CACHE"/lib/*.so*; do ln -sf "$library" "$package/lib/"; done
"$PYTHON" -c "import llama_cpp; llama_cpp.llama_backend_init(); print('llama.cpp ready:', llama_cpp.__version__, '($CACHE)')"
