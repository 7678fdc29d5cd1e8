#!/usr/bin/env bash
# make bench: runs every benchmark program under test/bench/, prints one
# table and writes out/bench/results.json, a list of
# {"name", "value", "unit", "params"} so runs can be compared.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p out/bench
parts=()
for dir in test/bench/*/; do
  name=$(basename "$dir")
  ls "$dir"*.go >/dev/null 2>&1 || continue
  [[ $name == scale ]] && continue # make bench-scale: too long for make bench
  echo "== bench: $name"
  go run "./$dir" -out "out/bench/$name.json"
  parts+=("out/bench/$name.json")
done
if ((${#parts[@]} == 0)); then
  echo "no benchmark programs under test/bench/" >&2
  exit 1
fi
go run ./hack/benchmerge -out out/bench/results.json "${parts[@]}"
