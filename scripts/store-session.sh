#!/usr/bin/env bash
# A short store session with the `integrations` CLI: a temporary SQLite store
# and keyring, the product's example account, scope changes and a key rotation.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet --bin integrations
bin="$PWD/target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-gnu}/debug/integrations"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
umask 077
export INTEGRATIONS_DB="sqlite://$dir/integrations.db?mode=rwc"
"$bin" keys generate > "$dir/keys"
export INTEGRATIONS_KEYS_FILE="$dir/keys"
unset INTEGRATIONS_KEYS

say() { printf '\n\033[1m$ integrations %s\033[0m\n' "$*"; "$bin" "$@"; }
add() { # add <type> <config json> [flags...]: config goes through stdin, never argv
  local kind=$1 config=$2; shift 2
  printf '\n\033[1m$ echo <config> | integrations add %s --user u_amouzou --config - %s\033[0m\n' "$kind" "$*" >&2
  printf '%s' "$config" | "$bin" add "$kind" --user u_amouzou --config - "$@"
}

say migrate
say profiles add prof_vzfin --user u_amouzou --slug vzfin --name "VZ Finance" --default
say profiles add prof_coding --user u_amouzou --slug coding --name "Coding"
add slack '{"bot_token":"xoxb-demo","team_id":"T01","team_name":"Vox Gateway","authed_user_id":"U01"}' --default
add telegram '{"bot_token":"111:demo","bot_user_id":111,"bot_username":"VonzioBot"}'
add telegram '{"bot_token":"222:demo","bot_user_id":222,"bot_username":"VZFinance_bot"}' --agents prof_vzfin --bound-profile prof_vzfin
gmail=$(add gmail '{"email":"amouzou@gmail.com","refresh_token":"1//demo","scopes":["gmail.readonly","gmail.send"]}')
echo "$gmail"
pnc=$(add teller '{"enrollment_id":"enr_pnc","access_token":"test_token_pnc","institution_name":"PNC"}' --agents prof_vzfin)
echo "$pnc"
chase=$(add teller '{"enrollment_id":"enr_chase","access_token":"test_token_chase","institution_name":"Chase"}' --agents prof_vzfin)
echo "$chase"
add email '{"api_key":"re_demo","from_address":"alerts@app.vonz.io","to_address":"amouzou@gmail.com"}'
add webhook '{"url":"https://hooks.zapier.com/hooks/catch/1/demo","secret":"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}'

say list --user u_amouzou
say show "$pnc"
say scope "$chase" --agents prof_coding
say scope "$chase" --agents prof_stranger || true
say disable "$gmail"
say list --user u_amouzou --type teller
new_key=$("$bin" keys generate)
printf '%s\n%s\n' "$new_key" "$(cat "$dir/keys")" > "$dir/keys"
say keys rotate
printf '%s\n' "$new_key" > "$dir/keys"
say show "$chase" --json
