#!/usr/bin/env bash
# The OpenAPI document is the contract: schemathesis runs every check it has
# against `integrations serve` on a fresh SQLite store, every provider
# pointed at the fakes (`fakes-serve`), with a seeded user, profiles,
# integrations and an API token. Exits non-zero on any failure, any 500 and
# any schema error. It exercises whatever operations the document lists.
#
#   bash scripts/schemathesis.sh [extra `st run` flags]
#
# SCHEMATHESIS_MAX_EXAMPLES bounds the cases per operation (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

# `python3 -m schemathesis.cli` is `st`, found whether or not pip's scripts
# are on PATH.
if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
    echo "installing schemathesis (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

source scripts/lib/serve.sh
start_fakes
new_store
export PUBLIC_BASE_URL=https://integrations.example
export DASHBOARD_URL=https://dashboard.example/settings
export SLACK_CLIENT_ID=slack-client SLACK_CLIENT_SECRET=slack-secret
export SLACK_AUTHORIZE_URL=https://slack.example/oauth/v2/authorize
export GOOGLE_AUTHORIZE_URL=https://accounts.example/o/oauth2/v2/auth
TELLER_SIGNING_PUBKEY=$(head -c 32 /dev/urandom | base64)
export TELLER_SIGNING_PUBKEY
export TELLER_WEBHOOK_SECRET=whsec_schemathesis INBOUND_FORWARD_SECRET=whsec_inbound
export SLACK_SIGNING_SECRET=slack_signing_schemathesis

user=u_schemathesis
"$bin" profiles add prof_vzfin --user "$user" --slug vzfin --name "VZ Finance" --default >/dev/null
"$bin" profiles add prof_coding --user "$user" --slug coding --name Coding >/dev/null
printf '%s' "{\"api_key\":\"re_test_key_0001\",\"from_address\":\"alerts@app.example\",\"to_address\":\"owner@example.com\"}" |
    "$bin" add email --user "$user" --config - >/dev/null
printf '%s' "{\"url\":\"${INBOUND_FORWARD_URL%/inbound}/hooks/agent\",\"secret\":\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"}" |
    "$bin" add webhook --user "$user" --config - --agents prof_vzfin >/dev/null
token=$("$bin" tokens create --user "$user")
start_serve

# Every check; the run is bounded by the examples per operation.
# scripts/schemathesis.toml allows 400 to a schema-valid request only where
# acceptance depends on state the document cannot name (each with its
# reason); scripts/schemathesis_hooks.py names the seeded profiles.
status=0
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks
python3 -m schemathesis.cli --config-file scripts/schemathesis.toml run "$base/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --workers 2 \
    --generation-database none \
    --no-color \
    "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "the server's log:" >&2
    tail -n 40 "$dir/serve.err" >&2
fi
exit "$status"
