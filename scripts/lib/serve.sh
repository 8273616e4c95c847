# Sourced by the scripts that judge `integrations serve` from outside
# (schemathesis.sh, conformance.sh): a temporary directory removed at exit
# with every process started through it, the fakes, a fresh SQLite store
# with its keyring, and the server on a free port. Sourced from the
# workspace root; builds `integrations` and `fakes-serve` first.

cargo build --locked --quiet --bin integrations -p integrations
cargo build --locked --quiet --bin fakes-serve -p fakes
bin_dir="$PWD/target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-gnu}/debug"
bin="$bin_dir/integrations"

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
umask 077

# Waits for `$2` to hold a line matching `$3`, while process `$1` lives.
await_line() {
    for _ in $(seq 300); do
        grep -qs "$3" "$2" && return 0
        kill -0 "$1" 2>/dev/null || { echo "$2: the process exited" >&2; cat "$2" >&2; return 1; }
        sleep 0.1
    done
    echo "timed out waiting for $2" >&2
    return 1
}

# Starts every fake provider (and a real SMTP server, Python's aiosmtpd,
# which fakes::smtp fetches when python3 lacks it) and exports the
# environment that points the server at them.
start_fakes() {
    "$bin_dir/fakes-serve" >"$dir/fakes.env" &
    pids+=($!)
    await_line "${pids[-1]}" "$dir/fakes.env" '^$'
    while IFS= read -r line && [ -n "$line" ]; do export "$line"; done <"$dir/fakes.env"
}

# Exports a fresh SQLite store in `$dir` and a new keyring, and migrates it.
new_store() {
    export INTEGRATIONS_DB="sqlite://$dir/integrations.db?mode=rwc"
    INTEGRATIONS_KEYS=$("$bin" keys generate)
    export INTEGRATIONS_KEYS
    export RUST_LOG=${RUST_LOG:-warn}
    "$bin" migrate >/dev/null
}

# Starts `integrations serve` on a free port with the environment as it is;
# sets `base` to its URL. Its log is `$dir/serve.err`.
start_serve() {
    "$bin" serve --listen 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.err" &
    pids+=($!)
    await_line "${pids[-1]}" "$dir/serve.out" '^listening on '
    base=$(sed -n 's/^listening on //p' "$dir/serve.out")
}
