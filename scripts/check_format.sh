#!/usr/bin/env bash
# Checks that every C++ source (*.h, *.cc) under include/ src/ tests/ bench/ examples/
# python/ is formatted by clang-format with the repository's .clang-format.
#
#   scripts/check_format.sh         list the files that drift, show a diff, exit 1
#   scripts/check_format.sh --fix   rewrite those files in place
#
# Files are those git tracks plus untracked ones it does not ignore, so new files are
# checked before they are added. Set CLANG_FORMAT to use another binary.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  -h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--fix]" >&2
    exit 2
    ;;
esac

clang_format="${CLANG_FORMAT:-clang-format}"
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "check_format: '$clang_format' not found (run scripts/install_deps.sh)" >&2
  exit 2
fi

dirs=(include src tests bench examples python)
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    # A tracked file deleted from the work tree is still listed by --cached.
    [[ -f "$f" ]] && files+=("$f")
  done < <(git ls-files -z --cached --others --exclude-standard -- \
             "${dirs[@]/%//*.h}" "${dirs[@]/%//*.cc}" | sort -zu)
else
  # Not a git checkout (e.g. an exported tarball): fall back to find.
  existing=()
  for d in "${dirs[@]}"; do [[ -d "$d" ]] && existing+=("$d"); done
  if ((${#existing[@]})); then
    while IFS= read -r -d '' f; do files+=("$f"); done < <(
      find "${existing[@]}" -type f \( -name '*.h' -o -name '*.cc' \) -print0 | sort -z)
  fi
fi

echo "check_format: $("$clang_format" --version | head -n1), ${#files[@]} files"

bad=()
for f in "${files[@]}"; do
  if ! "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done

if ((${#bad[@]} == 0)); then
  echo "check_format: OK"
  exit 0
fi

if ((fix)); then
  "$clang_format" -i "${bad[@]}"
  printf 'check_format: reformatted %s\n' "${bad[@]}"
  exit 0
fi

echo "check_format: ${#bad[@]} file(s) not clang-formatted:"
printf '  %s\n' "${bad[@]}"
# Show what would change (bounded, so a badly drifted tree does not flood the log).
max_lines=200
{
  for f in "${bad[@]}"; do
    "$clang_format" "$f" | diff -u --label "a/$f" --label "b/$f" "$f" - || true
  done
} | head -n "$max_lines"
echo "check_format: fix with scripts/check_format.sh --fix"
exit 1
