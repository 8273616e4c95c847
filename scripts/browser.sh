#!/usr/bin/env bash
# The Settings page in a real browser: headless Chromium (Debian's
# `chromium`) driven by playwright-core (tests/browser/page.test.mjs), against
# `integrations serve` and a running `mcp-teller serve` on a fresh SQLite
# store, every provider pointed at the fakes (`fakes-serve`). It installs
# what it lacks (apt-get chromium, npm ci).
#
#   bash scripts/browser.sh              # the test
#   SCREENSHOTS=docs/screenshots bash scripts/browser.sh   # and docs/settings-page.md's PNGs
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi
tests="$PWD/tests/browser"
source scripts/lib/npm.sh
npm_ci "$tests" playwright-core

cargo build --locked --quiet --bin resolver -p resolver
cargo build --locked --quiet --bin mcp-teller -p mcp-teller
source scripts/lib/serve.sh
start_fakes
new_store

# Canaries: every secret this store holds, none of which may reach the browser.
canary_email=re_CANARY_email_key_7Hq2
canary_slack=xoxb-CANARY-slack-token-9Kd4
canary_webhook=whsec_Q0FOQVJZd2ViaG9va3NlY3JldDEyMzQ1Ng==
canary_secret=CANARY-agent-secret-value-3Jf8
user=u_browser
"$bin" profiles add prof_fin --user "$user" --slug finance --name Finance --default >/dev/null
"$bin" profiles add prof_code --user "$user" --slug coding --name Coding >/dev/null
printf '%s' '{"enrollment_id":"enr_pnc","access_token":"test_token_pnc","institution_name":"PNC"}' |
    "$bin" add teller --user "$user" --config - >/dev/null
chase=$(printf '%s' '{"enrollment_id":"enr_chase","access_token":"test_token_chase","institution_name":"Chase"}' |
    "$bin" add teller --user "$user" --config - --agents prof_fin)
printf '%s' "{\"api_key\":\"$canary_email\",\"from_address\":\"alerts@app.example\",\"to_address\":\"owner@example.com\"}" |
    "$bin" add email --user "$user" --config - --default >/dev/null
printf '%s' "{\"bot_token\":\"$canary_slack\",\"team_id\":\"T0CANARY\",\"authed_user_id\":\"U0OWNER\",\"team_name\":\"VZ Finance\"}" |
    "$bin" add slack --user "$user" --config - --agents prof_fin,prof_code >/dev/null
# A bank whose grant the provider declared dead, as the health keeper
# marks it (reason, the provider's words, since when): the row that stands out.
python3 - "$dir/integrations.db" "$chase" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE user_integrations SET status = 'needs_reauth', status_reason = 'provider_refused', "
           "status_detail = 'Teller refused the access token (401)', "
           "status_since = '2026-12-05T09:30:00.000000Z' WHERE id = ?", (sys.argv[2],))
db.commit()
PY

# The server at a fixed port: PUBLIC_BASE_URL must name it for the OAuth callbacks.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The page at `localhost`, the fakes at 127.0.0.1: another site, as a real
# provider is, so that an OAuth return is a cross-site navigation.
export PUBLIC_BASE_URL=http://localhost:$port
# No health keeper: the fake Teller still takes the marked bank's token, so
# a check would set it active again before the page shows it.
HEALTH_INTERVAL=off "$bin" serve --listen "127.0.0.1:$port" >"$dir/serve.out" 2>"$dir/serve.err" &
pids+=($!)
await_line "${pids[-1]}" "$dir/serve.out" '^listening on '
base=$PUBLIC_BASE_URL
token=$("$bin" tokens create --user "$user" 2>/dev/null)
curl -sf -X POST "$base/v1/secrets" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"name\":\"BROKER_API_KEY\",\"value\":\"$canary_secret\",\"scope\":\"agents\",\"profile_ids\":[\"prof_fin\"]}" >/dev/null

# A running mcp-teller, and the finance agent's capability token for it.
"$bin_dir/mcp-teller" serve --listen 127.0.0.1:0 >"$dir/teller.out" 2>"$dir/teller.err" &
pids+=($!)
await_line "${pids[-1]}" "$dir/teller.out" '^listening on '
teller=$(sed -n 's/^listening on //p' "$dir/teller.out")
MCP_TOKEN=$(env -u INTEGRATIONS_KEYS "$bin_dir/resolver" plan --user "$user" --profile prof_fin \
    --session s_browser --transport http --url "$teller" --format claude-code |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["mcpServers"]["teller"]["headers"]["Authorization"].split(" ", 1)[1])')

export BASE=$base MCP_URL="$teller/mcp/teller" MCP_TOKEN CHROMIUM=$chromium
export TELEGRAM_BOT_TOKEN=7000000001:AAtest-bot-token-for-the-fake-0001
export NEW_SECRET_VALUE=CANARY-typed-in-the-page-5Rt1
export SIGN_IN_LINK=$("$bin" dashboard-link --user "$user" --url "$base")
export SECOND_LINK=$("$bin" dashboard-link --user "$user" --url "$base")
export CANARIES="$SMTP_TEST_PASSWORD,$NEW_SECRET_VALUE,$TELEGRAM_BOT_TOKEN,1//0gFakeGmailRefreshToken,ya29.fake-,$canary_email,$canary_slack,$canary_webhook,$canary_secret,test_token_pnc,test_token_chase,$token,$MCP_TOKEN,${SIGN_IN_LINK#*#}"
export FAKES_RECORDED_URL WEBHOOK_RECEIVER_URL SMTP_TEST_PORT SMTP_TEST_USERNAME SMTP_TEST_PASSWORD
[ -n "${SCREENSHOTS:-}" ] && SCREENSHOTS=$(realpath -m "$SCREENSHOTS") && mkdir -p "$SCREENSHOTS" && export SCREENSHOTS
status=0
node "$tests/page.test.mjs" || status=$?
if [ "$status" -ne 0 ]; then
    echo "the server's log:" >&2
    tail -n 40 "$dir/serve.err" >&2
fi
exit "$status"
