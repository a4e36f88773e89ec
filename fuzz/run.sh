#!/usr/bin/env bash
# Runs fuzz targets for a while, from any directory:
#   fuzz/run.sh <target>... [-t SECONDS] [-- libFuzzer args...]
#   fuzz/run.sh all -t 120
# New inputs go to fuzz/corpus-grown/<target>/ (not committed); the seeds
# in fuzz/corpus/<target>/ are read, never written. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"

seconds=300
targets=()
while (($#)); do
    case "$1" in
        -t) seconds="$2"; shift 2 ;;
        --) shift; break ;;
        all) mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list); shift ;;
        *) targets+=("$1"); shift ;;
    esac
done
if ((${#targets[@]} == 0)); then
    echo "usage: fuzz/run.sh <target>...|all [-t SECONDS] [-- libFuzzer args...]" >&2
    echo "targets: $(RUSTC_BOOTSTRAP=1 cargo fuzz list | tr '\n' ' ')" >&2
    exit 2
fi
for target in "${targets[@]}"; do
    mkdir -p "corpus-grown/$target"
    echo "== $target for ${seconds}s" >&2
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus-grown/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "$@"
done
