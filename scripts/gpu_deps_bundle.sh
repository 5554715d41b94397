#!/usr/bin/env bash
# Packs this machine's Debian build dependencies (headers, shared libraries, CMake and
# pkg-config files) into one relocatable tarball, for a GPU machine that has CUDA and
# a CUDA libtorch but none of the Debian packages (and no network to get them): the
# GPU machines lent to this project run Ubuntu 24.04 with a pip CUDA build of PyTorch.
# scripts/gpu_tests.sh --deps TARBALL unpacks it there and builds against it.
#
#   scripts/gpu_deps_bundle.sh OUT.tar.gz
#
# What it holds: the headers of the libraries the project includes (boost only as far
# as msgpack uses it, the files the build here read), their shared libraries and the
# libraries those load (as ldd lists them for a test binary of build/, without glibc,
# libstdc++ and CUDA), absl's, GTest's and nlohmann_json's CMake packages, GTest's static libraries,
# Google Benchmark, and pkg-config files (prefix @PREFIX@, set at unpack) without private requirements.
# Needs build/ (./scripts/test.sh or cmake) for the ldd list and the boost file list.
set -euo pipefail

out="${1:?usage: gpu_deps_bundle.sh OUT.tar.gz}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
probe="$build/tests/dht/dht_test"
[[ -x "$probe" ]] || { echo "gpu_deps_bundle: build $probe first" >&2; exit 1; }
[[ "$out" = /* ]] || out="$PWD/$out"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
usr="$stage/deps/usr"
arch_lib="$usr/lib/x86_64-linux-gnu"
mkdir -p "$usr/include" "$arch_lib/pkgconfig"

# Headers: whole packages, plus the boost files that msgpack pulled into build/.
packages=(libabsl-dev libsodium-dev libopendht-dev libgnutls28-dev zlib1g-dev
          libzstd-dev libzmq3-dev libxxhash-dev cppzmq-dev libgtest-dev libgmock-dev
          libmsgpack-cxx-dev libbenchmark-dev nlohmann-json3-dev)
for p in "${packages[@]}"; do
  dpkg -L "$p" | grep '^/usr/include/' | while read -r f; do
    [[ -f "$f" ]] && echo "$f"
  done
done > "$stage/headers"
(cd "$build" && ninja -t deps) | sed -n 's#^ *\(/usr/include/boost/.*\)#\1#p' | sort -u \
  >> "$stage/headers"
tar -C / -cf - --files-from=<(sed 's#^/##' "$stage/headers") | tar -C "$stage/deps" -xf -

# Shared libraries a test binary loads, and link names for the ones the build links.
ldd "$probe" | awk '/=>/ {print $3}' |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*|libcudart|libnccl)\.so' |
  while read -r lib; do cp -L "$lib" "$arch_lib/"; done
for name in zstd xxhash zmq opendht sodium; do
  real="$(readlink -f "/usr/lib/x86_64-linux-gnu/lib$name.so")"
  soname="$(objdump -p "$real" | awk '/SONAME/ {print $2}')"
  [[ -f "$arch_lib/$soname" ]] || cp "$real" "$arch_lib/$soname"
  ln -sf "$soname" "$arch_lib/lib$name.so"
done
# absl's CMake package names the files themselves (libabsl_x.so.20220623.0.0); what
# links them loads them by soname (libabsl_x.so.20220623).
for lib in /usr/lib/x86_64-linux-gnu/libabsl_*.so; do
  real="$(readlink -f "$lib")"
  target="$(basename "$real")"
  soname="$(objdump -p "$real" | awk '/SONAME/ {print $2}')"
  rm -f "$arch_lib/$target" "$arch_lib/$soname"
  cp "$real" "$arch_lib/$target"
  [[ "$soname" == "$target" ]] || ln -sf "$target" "$arch_lib/$soname"
  ln -sf "$target" "$arch_lib/$(basename "$lib")"
done
cp /usr/lib/x86_64-linux-gnu/libgtest*.a /usr/lib/x86_64-linux-gnu/libgmock*.a \
  /usr/lib/x86_64-linux-gnu/libbenchmark_main.a "$arch_lib/"
bench="$(readlink -f /usr/lib/x86_64-linux-gnu/libbenchmark.so)"
cp "$bench" "$arch_lib/"
ln -sf "$(basename "$bench")" "$arch_lib/libbenchmark.so"
ln -sf "$(basename "$bench")" "$arch_lib/$(objdump -p "$bench" | awk '/SONAME/ {print $2}')"
mkdir -p "$arch_lib/cmake"
cp -r /usr/lib/x86_64-linux-gnu/cmake/absl /usr/lib/x86_64-linux-gnu/cmake/GTest \
  /usr/lib/x86_64-linux-gnu/cmake/benchmark "$arch_lib/cmake/"
mkdir -p "$usr/share/cmake"
cp -r /usr/share/cmake/nlohmann_json "$usr/share/cmake/"

# pkg-config files with only what the build asks (their private requirements name
# packages that are not in the bundle; the shared libraries carry their own needs).
write_pc() {  # NAME LIB REQUIRES
  {
    echo "prefix=@PREFIX@/usr"
    echo "includedir=\${prefix}/include"
    echo "libdir=\${prefix}/lib/x86_64-linux-gnu"
    echo "Name: $1"
    echo "Description: $1 (bundled by gpu_deps_bundle.sh)"
    echo "Version: $(pkg-config --modversion "$1")"
    if [[ -n "$3" ]]; then echo "Requires: $3"; fi
    echo "Cflags: -I\${includedir}"
    if [[ -n "$2" ]]; then echo "Libs: -L\${libdir} -l$2"; fi
  } > "$arch_lib/pkgconfig/$1.pc"
}
write_pc libzstd zstd ""
write_pc libxxhash xxhash ""
write_pc libzmq zmq ""
write_pc cppzmq "" libzmq
write_pc opendht opendht ""
write_pc libsodium sodium ""

tar -C "$stage" -czf "$out" deps
echo "gpu_deps_bundle: $out ($(du -h "$out" | cut -f1))"
