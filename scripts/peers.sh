# Sourced by scripts/*.sh: installs the pinned upstream reference tools, one venv per tool,
# under target/peers (rebuilt when its requirements file changes).

peers_dir="${PEERS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/peers}"

# ensure_peer NAME: a venv at $peers_dir/NAME with scripts/peers/NAME.txt installed; prints
# its path.
ensure_peer() {
    local name=$1
    local requirements venv stamp
    requirements="$(dirname "${BASH_SOURCE[0]}")/peers/$name.txt"
    venv="$peers_dir/$name"
    stamp="$venv/.requirements"
    if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
        cp "$requirements" "$stamp"
    fi
    echo "$venv"
}
