// The sign-in link carries its single-use key after '#', so that the key
// never reaches a server log; it is taken out of the address bar first,
// then posted once. A browser already signed in is asked before its
// session is replaced: a link someone else sent would otherwise sign it in
// to their account.
"use strict";
(async () => {
  const status = document.getElementById("sign-in-status");
  const button = document.getElementById("sign-in");
  const raw = location.hash.slice(1);
  history.replaceState(null, "", location.pathname);
  let key = "";
  try { key = decodeURIComponent(raw); } catch { key = ""; }
  if (!key) {
    status.textContent = "This link has no sign-in key. Ask for a new one (integrations dashboard-link).";
    return;
  }
  const signIn = async () => {
    button.hidden = true;
    try {
      const response = await fetch("/v1/dashboard/sign-in", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key }),
      });
      if (response.ok) {
        location.replace("/settings/integrations");
        return;
      }
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || `Sign-in failed (HTTP ${response.status}).`;
    } catch {
      status.textContent = "The server could not be reached; try the link again.";
    }
  };
  const current = await fetch("/v1/dashboard/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null)).catch(() => null);
  if (!current) {
    await signIn();
    return;
  }
  status.textContent = `This browser is signed in as ${current.user_id}. Open this link only if you asked for it: it signs this browser in to the account it was made for.`;
  button.hidden = false;
  button.addEventListener("click", signIn);
  button.focus();
})();
