# Sourced by scripts/bench-*.sh: timing of whole commands, kept per name for medians.

declare -A samples

# measure NAME COMMAND...: runs COMMAND (output discarded) and records its wall time.
measure() {
    local name=$1 start end
    shift
    start=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || { echo "$name failed" >&2; exit 1; }
    end=$EPOCHREALTIME
    samples[$name]+="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }') "
}

# median "S1 S2 …": the median of the recorded times.
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
