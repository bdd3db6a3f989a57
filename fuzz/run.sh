#!/usr/bin/env bash
# Runs the fuzz targets one after another, each for FUZZ_SECONDS (default
# 180) on one core, from its committed seeds and regressions plus the
# corpus it grew before (fuzz/corpus/<target>, not committed).
#
#   bash fuzz/run.sh                  # every target
#   FUZZ_SECONDS=600 bash fuzz/run.sh recovery verify
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only a stable toolchain is
# assumed: RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo-fuzz
# passes (-Zsanitizer=address and friends). A crash leaves its input in
# fuzz/artifacts/<target>/ and stops that target's run.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-180}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(record verify recovery manifest lead_index page_token validation merkle note bundle mirror apply)
fi
status=0
for target in "${targets[@]}"; do
    dict=()
    case "$target" in
        record | verify | recovery) dict=(-dict=fuzz/dicts/record.dict) ;;
        manifest) dict=(-dict=fuzz/dicts/manifest.dict) ;;
    esac
    mkdir -p "fuzz/corpus/$target"
    echo "== $target: ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
        -- -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" || status=1
done
exit "$status"
