#!/usr/bin/env bash
# Runs clang-tidy (configuration: .clang-tidy) over the library sources src/**/*.cc.
#
#   scripts/check_tidy.sh BUILD_DIR [FILE...]
#
# BUILD_DIR must hold compile_commands.json (configure with
# -DCMAKE_EXPORT_COMPILE_COMMANDS=ON). Only files present in that database are
# checked: a .cc not yet added to CMake is reported and skipped. Headers under
# include/hivemind/ and src/ are checked through the files that include them.
# Runs HIVEMIND_JOBS (default 2) clang-tidy processes at once. Exits nonzero if any
# file has an error (naming and use-after-move are errors, see .clang-tidy; so is
# anything the compiler rejects). Set CLANG_TIDY to use another binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if (($# < 1)); then
  echo "usage: $0 BUILD_DIR [FILE...]" >&2
  exit 2
fi
build_dir="$(cd "$1" && pwd)"
shift
if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "check_tidy: $build_dir/compile_commands.json not found" \
       "(configure with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2
  exit 2
fi

clang_tidy="${CLANG_TIDY:-clang-tidy}"
if ! command -v "$clang_tidy" >/dev/null 2>&1; then
  echo "check_tidy: '$clang_tidy' not found (run scripts/install_deps.sh)" >&2
  exit 2
fi
jobs="${HIVEMIND_JOBS:-2}"
# The checkout's path as a regex (escape what is special in it).
root_re="$(printf '%s' "$root" | sed 's/[][\\.*^$+?(){}|]/\\&/g')"

cd "$root"

# Candidate files: the arguments, else every src/**/*.cc git knows of (tracked, or
# untracked and not ignored), else every src/**/*.cc on disk.
candidates=()
if (($# > 0)); then
  candidates=("$@")
elif git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [[ -f "$f" ]] && candidates+=("$f")
  done < <(git ls-files -z --cached --others --exclude-standard -- 'src/*.cc' | sort -zu)
else
  while IFS= read -r -d '' f; do candidates+=("$f"); done < <(
    find src -type f -name '*.cc' -print0 | sort -z)
fi

# Keep those the compilation database knows (absolute paths).
mapfile -t known < <(python3 - "$build_dir/compile_commands.json" <<'PY'
import json, os, sys
with open(sys.argv[1]) as f:
    db = json.load(f)
for entry in db:
    path = entry["file"]
    if not os.path.isabs(path):
        path = os.path.join(entry["directory"], path)
    print(os.path.realpath(path))
PY
)
declare -A in_db=()
for k in "${known[@]}"; do in_db["$k"]=1; done

files=()
skipped=()
for f in "${candidates[@]}"; do
  abs="$(realpath "$f")"
  if [[ -n "${in_db[$abs]:-}" ]]; then
    files+=("$abs")
  else
    skipped+=("$f")
  fi
done
if ((${#skipped[@]})); then
  printf 'check_tidy: not in the compilation database, skipped: %s\n' "${skipped[@]}"
fi
if ((${#files[@]} == 0)); then
  echo "check_tidy: no files to check"
  exit 0
fi

echo "check_tidy: $("$clang_tidy" --version | grep -m1 -i version | sed 's/^ *//')," \
     "${#files[@]} files, $jobs jobs"

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

# One clang-tidy per file; each prints its diagnostics in one piece when done, so
# parallel runs do not interleave. Writes FILE.failed when clang-tidy fails.
run_one() {
  local file="$1" log rc=0
  log="$out_dir/$(echo "$file" | tr '/' '_').log"
  # Only headers of this checkout, whatever path it lives at. Compiler warning flags
  # that clang does not know (the database may come from GCC) are not errors.
  "$clang_tidy" -p "$build_dir" --quiet \
    --header-filter="^${root_re}/(include/hivemind|src)/" \
    --extra-arg=-Wno-unknown-warning-option \
    "$file" >"$log" 2>&1 || rc=$?
  # Drop clang-tidy's "N warnings generated." chatter; keep the diagnostics.
  grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "$log" || true
  if ((rc != 0)); then
    echo "${file#"$root"/}" >"$log.failed"
    echo "check_tidy: FAILED ${file#"$root"/}"
  fi
  return 0
}
export -f run_one
export clang_tidy build_dir root root_re out_dir

printf '%s\0' "${files[@]}" | xargs -0 -n1 -P"$jobs" bash -c 'run_one "$1"' _

shopt -s nullglob
failed=("$out_dir"/*.failed)
if ((${#failed[@]})); then
  echo "check_tidy: ${#failed[@]} of ${#files[@]} file(s) with errors:"
  cat "${failed[@]}" | sort | sed 's/^/  /'
  exit 1
fi
echo "check_tidy: OK (${#files[@]} files)"
