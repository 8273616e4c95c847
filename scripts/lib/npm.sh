# Sourced by the scripts that run Node tools (conformance.sh, browser.sh):
# `npm_ci DIR WHAT` installs DIR's package-lock.json with `npm ci` when
# node_modules is missing or was installed from another lock.
npm_ci() {
    local stamp="$1/node_modules/.lock-sha256" lock_sum
    lock_sum=$(sha256sum "$1/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
        echo "installing $2 (npm ci)"
        (cd "$1" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
        echo "$lock_sum" >"$stamp"
    fi
}
