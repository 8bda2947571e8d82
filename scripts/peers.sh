# Sourced by scripts/*.sh: installs the pinned upstream reference tools, one venv per tool,
# under target/peers (rebuilt when its requirements file or interpreter changes).

peers_dir="${PEERS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/peers}"

# ensure_peer NAME: a venv at $peers_dir/NAME with scripts/peers/NAME.txt installed; prints
# its path.
ensure_peer() {
    local name=$1
    local requirements venv stamp python=python3
    requirements="$(dirname "${BASH_SOURCE[0]}")/peers/$name.txt"
    venv="$peers_dir/$name"
    stamp="$venv/.requirements"
    # Debian's python when it can make venvs: some cases run the peers as nobody, who cannot
    # reach an interpreter under /root (pyenv).
    if /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        python=/usr/bin/python3
    fi
    if ! { echo "# $python"; cat "$requirements"; } | cmp -s - "$stamp" 2>/dev/null; then
        rm -rf "$venv"
        "$python" -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
        { echo "# $python"; cat "$requirements"; } > "$stamp"
    fi
    echo "$venv"
}
