#!/usr/bin/env bash
# Prints every native fuzz target of the repository as package:FuzzName, one
# per line (go test fuzzes one target of one package per invocation), so
# `make fuzz` never forgets a target a test file declares.
set -euo pipefail
cd "$(dirname "$0")/.."
git grep -n '^func Fuzz[A-Za-z0-9_]*(' -- '*_test.go' |
  awk -F: '{split($3, f, /[ (]/); d = $1; sub(/\/[^\/]*$/, "", d); print "./" d ":" f[2]}' | sort
