// The sign-in link carries its single-use key after '#', so that the key
// never reaches a server log; it is posted once and removed from the URL.
"use strict";
(async () => {
  const status = document.getElementById("sign-in-status");
  const key = decodeURIComponent(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  if (!key) {
    status.textContent = "This link has no sign-in key. Ask for a new one (integrations dashboard-link).";
    return;
  }
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
  } catch (e) {
    status.textContent = "The server could not be reached; try the link again.";
  }
})();
