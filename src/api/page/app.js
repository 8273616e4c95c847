// Settings → Integrations: a view of the REST API, nothing more. Every
// change is one API call made with the session cookie and its CSRF token;
// after it, the page reloads what it shows from the API. Data is written
// with textContent only.
"use strict";

const CHAT = ["slack", "telegram", "email", "webhook"];
const DATA = ["gmail", "teller"];
const NAMES = {
  slack: "Slack", telegram: "Telegram", email: "Email", webhook: "Webhook",
  gmail: "Gmail", teller: "Bank (Teller)",
};

const state = { csrf: "", user: "", profiles: [], integrations: [], secrets: [], providers: {} };
const $ = (id) => document.getElementById(id);

/** One API call; throws an Error whose message is the API's own. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `The server answered HTTP ${response.status}.`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function notice(text) {
  $("problem").textContent = "";
  $("notice").textContent = text;
}

function problem(error) {
  $("notice").textContent = "";
  $("problem").textContent = error instanceof Error ? error.message : String(error);
}

/** The slugs a scope names, as the chip says it. */
function scopeText(scope, ids) {
  if (scope === "all") return "All agents";
  const slugs = ids.map((id) => (state.profiles.find((p) => p.id === id) || { slug: id }).slug);
  return `Specific agents: ${slugs.join(", ")}`;
}

// ----- loading -----

async function load() {
  try {
    const session = await api("GET", "/v1/dashboard/session");
    state.csrf = session.csrf_token;
    state.user = session.user_id;
  } catch (error) {
    document.querySelectorAll("main section").forEach((s) => { s.hidden = true; });
    problem(error.status === 401
      ? "You are signed out. Open a new sign-in link (integrations dashboard-link --user <you>)."
      : error);
    return;
  }
  $("who").textContent = `Signed in as ${state.user}`;
  $("sign-out").hidden = false;
  const providers = ["slack", "gmail", "teller", "telegram"];
  const configs = await Promise.all(providers.map((p) =>
    api("GET", `/v1/integrations/${p}/config`).catch(() => ({ enabled: false }))));
  providers.forEach((p, i) => { state.providers[p] = configs[i]; });
  for (const button of document.querySelectorAll("[data-connect]")) {
    const kind = button.dataset.connect;
    const config = state.providers[kind];
    button.hidden = !!config && !config.enabled && !(kind === "telegram" && config.platform_bot);
  }
  $("telegram-platform").hidden = !(state.providers.telegram && state.providers.telegram.platform_bot);
  showOutcome();
  await refresh();
}

/** What an OAuth callback came back with (`?connected=gmail`, `?error=...`). */
function showOutcome() {
  const params = new URLSearchParams(location.search);
  // Only the server's own words: a reason is a known code, nothing else
  // of the address is shown.
  const reasons = {
    access_denied: "the permission was not given",
    invalid_state: "the connect link expired, was used, or was opened in another browser; start again",
    provider_error: "the provider did not complete it; try again",
    conflict: "that account is already connected",
    server_error: "this server is not set up for it",
  };
  if (NAMES[params.get("connected")]) notice(`${NAMES[params.get("connected")]} is connected.`);
  else if (params.has("error")) problem(`The connection was not made: ${reasons[params.get("error")] || "try again"}.`);
  if (location.search) history.replaceState(null, "", location.pathname);
}

async function refresh() {
  try {
    const [profiles, integrations, secrets] = await Promise.all([
      api("GET", "/v1/profiles"), api("GET", "/v1/integrations"), api("GET", "/v1/secrets"),
    ]);
    state.profiles = profiles.profiles;
    state.integrations = integrations.integrations;
    state.secrets = secrets.secrets;
  } catch (error) {
    problem(error);
    return;
  }
  render();
}

// ----- rendering -----

function render() {
  const focused = document.activeElement && document.activeElement.id;
  renderRows($("chat-rows"), state.integrations.filter((i) => CHAT.includes(i.type)), "No notification or chat account is connected yet.");
  renderRows($("data-rows"), state.integrations.filter((i) => DATA.includes(i.type)), "No data source is connected yet.");
  renderSecrets();
  if (focused && $(focused)) $(focused).focus();
}

function renderRows(list, rows, empty) {
  list.replaceChildren(...(rows.length ? rows.map(integrationRow) : [el("li", { class: "empty", text: empty })]));
}

// Why a connection needs its person, by the API's `status_reason`.
const REASONS = {
  provider_refused: "The provider refused it",
  enrollment_disconnected: "The bank asks you to sign in again",
  identity_taken: "Another connection holds this account",
};

// "<why> since <when>: <the provider's words>", for a needs_reauth row.
function whyText(row) {
  const since = row.status_since ? ` since ${new Date(row.status_since).toLocaleString()}` : "";
  const words = row.status_detail ? `: ${row.status_detail}` : "";
  return `${REASONS[row.status_reason] || "It needs you"}${since}${words}`;
}

function integrationRow(row) {
  const name = `${NAMES[row.type]} ${row.label}`;
  const reauth = row.status === "needs_reauth";
  const result = el("p", { class: "result", role: "status", id: `result-${row.id}` });
  const toggle = (field, text) => el("label", { class: "toggle" },
    el("input", {
      type: "checkbox", role: "switch", id: `${field}-${row.id}`, checked: row[field],
      "aria-label": `${text} (${name})`,
      onchange: (e) => change(row, { [field]: e.target.checked }, result),
    }),
    el("span", { text, "aria-hidden": "true" }));
  return el("li", { class: reauth ? "row needs-reauth" : "row", "data-id": row.id, "aria-label": name },
    el("div", { class: "what" },
      el("span", { class: "type", text: NAMES[row.type] }),
      el("span", { class: "label", text: row.label }),
      el("span", { class: "status", text: reauth ? "Needs reconnecting" : "Active" }),
      reauth && row.status_reason ? el("span", { class: "why", id: `why-${row.id}`, text: whyText(row) }) : null,
      row.error ? el("span", { class: "status", text: row.error }) : null),
    el("div", { class: "controls" },
      el("button", {
        type: "button", class: "chip", id: `scope-${row.id}`, "aria-haspopup": "dialog",
        "aria-label": `Scope: ${scopeText(row.scope, row.profile_ids)}, for ${name}`,
        text: `Scope: ${scopeText(row.scope, row.profile_ids)}`,
        onclick: () => openScope(name, row, (scope) => api("PATCH", `/v1/integrations/${row.id}`, scope)),
      }),
      // Only a notification channel can be the default one.
      CHAT.includes(row.type) ? toggle("is_default", "Default") : null,
      toggle("enabled", "Enabled"),
      reauth ? el("button", {
        type: "button", class: "primary", id: `reconnect-${row.id}`, text: "Reconnect",
        "aria-label": `Reconnect ${name}`, onclick: () => connect(row.type),
      }) : null,
      row.type === "telegram" ? el("button", {
        type: "button", id: `link-${row.id}`, text: "Pairing link", "aria-label": `Pairing link for ${name}`,
        onclick: () => pairingLink(row, result),
      }) : null,
      el("button", {
        type: "button", id: `test-${row.id}`, text: "Test", "aria-label": `Test ${name}`,
        onclick: () => test(row, result),
      }),
      el("button", {
        type: "button", class: "danger", id: `disconnect-${row.id}`, text: "Disconnect",
        "aria-label": `Disconnect ${name}`, onclick: () => disconnect(row, name),
      })),
    result);
}

function renderSecrets() {
  const rows = state.secrets.map((secret) => {
    const result = el("p", { class: "result", role: "status" });
    return el("li", { class: "row", "aria-label": `Secret ${secret.name}` },
      el("div", { class: "what" },
        el("span", { class: "type", text: "Secret" }),
        el("code", { class: "label", text: secret.name }),
        el("span", { class: "status", text: "Value hidden" })),
      el("div", { class: "controls" },
        el("button", {
          type: "button", class: "chip", id: `scope-${secret.id}`, "aria-haspopup": "dialog",
          "aria-label": `Scope: ${scopeText(secret.scope, secret.profile_ids)}, for secret ${secret.name}`,
          text: `Scope: ${scopeText(secret.scope, secret.profile_ids)}`,
          onclick: () => openScope(`secret ${secret.name}`, secret, (scope) => api("PATCH", `/v1/secrets/${secret.id}`, scope)),
        }),
        el("button", {
          type: "button", id: `replace-${secret.id}`, text: "Replace value",
          "aria-label": `Replace value of ${secret.name}`, onclick: () => openSecret(secret),
        }),
        el("button", {
          type: "button", class: "danger", id: `delete-${secret.id}`, text: "Delete",
          "aria-label": `Delete secret ${secret.name}`,
          onclick: () => confirmThen(`Delete the secret ${secret.name}? Agents stop receiving it.`, "Delete", async () => {
            await api("DELETE", `/v1/secrets/${secret.id}`);
            notice(`Secret ${secret.name} deleted.`);
          }, result),
        })),
      result);
  });
  $("secret-rows").replaceChildren(...(rows.length ? rows : [el("li", { class: "empty", text: "No agent secret is set." })]));
}

// ----- actions -----

async function change(row, patch, result) {
  try {
    await api("PATCH", `/v1/integrations/${row.id}`, patch);
    notice("Saved.");
  } catch (error) {
    result.textContent = error.message;
  }
  await refresh();
}

async function test(row, result) {
  result.textContent = "Sending a test…";
  try {
    const tested = await api("POST", `/v1/integrations/${row.id}/test`);
    result.textContent = `Test passed: ${tested.detail}`;
  } catch (error) {
    result.textContent = `Test failed: ${error.message}`;
  }
}

async function pairingLink(row, result) {
  try {
    const linked = await api("POST", "/v1/integrations/telegram/regenerate-link-code", { id: row.id });
    result.replaceChildren("Open in Telegram to pair: ", el("a", { href: linked.link_url, text: linked.link_url }));
  } catch (error) {
    result.textContent = error.message;
  }
}

function disconnect(row, name) {
  const result = $(`result-${row.id}`);
  confirmThen(`Disconnect ${name}? Agents lose it at once, and the grant is revoked at the provider where it allows.`, "Disconnect", async () => {
    const deleted = await api("DELETE", `/v1/integrations/${row.id}`);
    notice(`${name} is disconnected. ${deleted.revoked ? "Revoked at the provider" : "Not revoked at the provider"}: ${deleted.detail}`);
  }, result);
}

/** Asks first; runs `action` on yes; shows its error in `result`. */
function confirmThen(text, verb, action, result) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = verb;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    dialog.onclose = null;
    if (dialog.returnValue !== "yes") return;
    try {
      await action();
    } catch (error) {
      if (result) result.textContent = error.message;
      else problem(error);
    }
    await refresh();
  };
  dialog.showModal();
}

/** The scope dialog for `item` (an integration or a secret); `save` sends the change. */
function openScope(name, item, save) {
  const dialog = $("scope-dialog");
  const form = $("scope-form");
  $("scope-what").textContent = `For ${name}.`;
  $("scope-problem").textContent = "";
  form.elements.scope.value = item.scope;
  const boxes = state.profiles.map((p) => el("label", {},
    el("input", {
      type: "checkbox", name: "profile", value: p.id, checked: item.profile_ids.includes(p.id),
      onchange: () => { form.elements.scope.value = "agents"; },
    }),
    ` ${p.name} (${p.slug})`));
  $("scope-list").replaceChildren(...(boxes.length ? boxes : [el("p", { text: "You have no agent profiles yet." })]));
  form.onsubmit = async (event) => {
    event.preventDefault();
    const scope = form.elements.scope.value;
    const ids = [...form.querySelectorAll("input[name=profile]:checked")].map((b) => b.value);
    try {
      await save(scope === "all" ? { scope: "all" } : { scope: "agents", profile_ids: ids });
    } catch (error) {
      $("scope-problem").textContent = error.message;
      return;
    }
    dialog.close();
    notice(`Scope of ${name} saved: ${scope === "all" ? "All agents" : scopeText("agents", ids)}.`);
    await refresh();
    const chip = $(`scope-${item.id}`);
    if (chip) chip.focus();
  };
  dialog.showModal();
}

/** Submits `form` as `send(values)`, showing the API's error inside the dialog. */
function formDialog(id, send) {
  const dialog = $(id);
  const form = dialog.querySelector("form");
  const shown = form.querySelector(".dialog-problem");
  form.reset();
  shown.textContent = "";
  form.onsubmit = async (event) => {
    event.preventDefault();
    const values = Object.fromEntries([...new FormData(form)].filter(([k, v]) => v !== "" && k !== "agent"));
    try {
      if (await send(values, dialog) !== false) dialog.close();
    } catch (error) {
      shown.textContent = error.message;
      return;
    }
    await refresh();
  };
  dialog.showModal();
}

/** Adds an Email integration: through Resend, or through the person's own
 * SMTP server (only the chosen provider's fields are sent). */
function emailDialog() {
  const form = $("email-form");
  const show = () => {
    const chosen = form.elements.provider.value;
    for (const set of form.querySelectorAll("fieldset[data-provider]")) {
      const on = set.dataset.provider === chosen;
      set.hidden = !on;
      set.disabled = !on;
    }
  };
  form.onchange = (event) => { if (event.target.name === "provider") show(); };
  formDialog("email-dialog", async (config) => {
    if (config.smtp_port) config.smtp_port = Number(config.smtp_port);
    await api("POST", "/v1/integrations", { type: "email", config });
    notice("Email added.");
  });
  show();
}

/** Adds a secret (scoped from the start: no agent outside it ever sees
 * it), or replaces the value of `secret`. */
function openSecret(secret) {
  $("secret-title").textContent = secret ? `Replace the value of ${secret.name}` : "Add secret";
  const agents = $("secret-agents");
  agents.hidden = !!secret;
  agents.querySelector("div").replaceChildren(...state.profiles.map((p) => el("label", {},
    el("input", { type: "checkbox", name: "agent", value: p.id }), ` ${p.name} (${p.slug})`)));
  formDialog("secret-dialog", async (values, dialog) => {
    if (secret) {
      await api("PATCH", `/v1/secrets/${secret.id}`, { value: values.value });
      notice(`The value of ${secret.name} is replaced.`);
      return;
    }
    const ids = [...dialog.querySelectorAll("input[name=agent]:checked")].map((b) => b.value);
    const scope = ids.length ? { scope: "agents", profile_ids: ids } : { scope: "all" };
    await api("POST", "/v1/secrets", { name: values.name, value: values.value, ...scope });
    notice(`Secret ${values.name} saved, for ${scopeText(scope.scope, ids)}.`);
  });
  const name = $("secret-form").elements.name;
  name.value = secret ? secret.name : "";
  name.readOnly = !!secret;
}

async function connect(kind) {
  try {
    if (kind === "slack" || kind === "gmail") {
      const { url } = await api("GET", `/v1/integrations/${kind}/authorize`);
      location.assign(url);
    } else if (kind === "teller") {
      await tellerConnect();
    } else if (kind === "telegram") {
      telegramDialog();
    } else if (kind === "email") {
      emailDialog();
    } else if (kind === "webhook") {
      formDialog("webhook-dialog", async (config) => {
        await api("POST", "/v1/integrations", { type: "webhook", config });
        notice("Webhook added.");
      });
    }
  } catch (error) {
    problem(error);
  }
}

function telegramDialog() {
  const select = $("telegram-form").elements.bound_profile_id;
  select.replaceChildren(el("option", { value: "", text: "Default agent" }),
    ...state.profiles.map((p) => el("option", { value: p.id, text: `${p.name} (${p.slug})` })));
  const shown = (connected) => {
    $("telegram-link").replaceChildren(`Connected @${connected.bot_username}. Open in Telegram to pair your chat: `,
      el("a", { href: connected.link_url, text: connected.link_url }));
    notice(`Telegram bot @${connected.bot_username} connected; pair it from the link.`);
  };
  $("telegram-link").textContent = "";
  formDialog("telegram-dialog", async (values) => {
    shown(await api("POST", "/v1/integrations/telegram/connect", values));
    return false;
  });
  $("telegram-platform").onclick = async () => {
    const profile = select.value;
    try {
      shown(await api("POST", "/v1/integrations/telegram/connect-platform", profile ? { bound_profile_id: profile } : {}));
      await refresh();
    } catch (error) {
      $("telegram-form").querySelector(".dialog-problem").textContent = error.message;
    }
  };
}

/** Teller Connect: its script from the configured URL, a nonce from the API. */
async function tellerConnect() {
  const config = state.providers.teller;
  if (!window.TellerConnect) {
    await new Promise((resolve, reject) => {
      const script = el("script", { src: config.connect_url });
      script.onload = resolve;
      script.onerror = () => reject(new Error("Teller Connect could not be loaded."));
      document.head.append(script);
    });
  }
  const { nonce } = await api("POST", "/v1/integrations/teller/nonce");
  window.TellerConnect.setup({
    applicationId: config.application_id,
    environment: config.environment,
    nonce,
    onSuccess: async (enrollment) => {
      try {
        const row = await api("POST", "/v1/integrations/teller/callback", { ...enrollment, nonce });
        notice(`${row.label} is connected.`);
      } catch (error) {
        problem(error);
      }
      await refresh();
    },
  }).open();
}

async function signOut() {
  try {
    await api("POST", "/v1/dashboard/sign-out");
  } catch (error) {
    problem(error);
    return;
  }
  location.reload();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-connect]")) {
    button.addEventListener("click", () => connect(button.dataset.connect));
  }
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  $("add-secret").addEventListener("click", () => openSecret(null));
  $("sign-out").addEventListener("click", signOut);
  load();
});
