# Sourced by the training scripts. mix OUT DIR...: one dataset folder OUT whose four splits link every
# file of each dataset folder DIR, prefixed with DIR's name (so scenes of equal names do not collide).
mix() {
    local out=$1 split dir f; shift
    for split in imagesTr labelsTr imagesVal labelsVal; do
        mkdir -p "$out/$split"
        for dir in "$@"; do
            for f in "$dir/$split"/*.mrc; do
                if [ -e "$f" ]; then  # a split the folder lacks leaves its glob unmatched
                    ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" \
                        "$out/$split/$(basename "$dir")_$(basename "$f")"
                fi
            done
        done
    done
}
