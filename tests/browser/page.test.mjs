// The Settings page as a person uses it, in headless Chromium: sign in
// through a dashboard link, change a scope (a running mcp-teller refuses its
// next call), connect Gmail through the fake Google, disconnect it (the fake
// recorded the revocation), add a webhook and test it, change a scope with
// the keyboard alone; nothing secret reaches the browser, and every control
// has an accessible name and is reachable with Tab. Run by scripts/browser.sh,
// which starts the servers and passes them in the environment.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through scripts/browser.sh`);
  return value;
};
const BASE = env("BASE");
const CANARIES = env("CANARIES").split(",").filter(Boolean);
const SCREENSHOTS = process.env.SCREENSHOTS;

/** One tools/call of the running mcp-teller, with the finance agent's token. */
async function tellerCall(name, args) {
  const response = await fetch(env("MCP_URL"), {
    method: "POST",
    headers: {
      Authorization: `Bearer ${env("MCP_TOKEN")}`,
      "Content-Type": "application/json",
      Accept: "application/json, text/event-stream",
      "MCP-Protocol-Version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args } }),
  });
  assert.equal(response.status, 200, `mcp-teller answered HTTP ${response.status}`);
  const body = await response.json();
  assert.ok(body.result, `mcp-teller answered no result: ${JSON.stringify(body)}`);
  return body.result;
}

async function recorded() {
  return (await fetch(env("FAKES_RECORDED_URL"))).json();
}

let failures = 0;
async function step(name, run) {
  const started = Date.now();
  try {
    await run();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures += 1;
    console.log(`FAIL ${name}\n${error.stack}`);
  }
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox"],
});
const context = await browser.newContext({ viewport: { width: 1180, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(10_000);

// Everything the page loads, kept for the canary check.
const loaded = [];
page.on("response", async (response) => {
  try {
    loaded.push({ url: response.url(), body: await response.text() });
  } catch {
    // A redirect has no body.
  }
});
const browserErrors = [];
page.on("pageerror", (error) => browserErrors.push(error.message));

const row = (name) => page.getByRole("listitem", { name });
const notice = page.locator("#notice");

await step("a dashboard link signs in and lands on the page", async () => {
  await page.goto(env("SIGN_IN_LINK"));
  await page.waitForURL(`${BASE}/settings/integrations`);
  await page.getByText("Signed in as u_browser").waitFor();
  assert.ok(!page.url().includes("#"), "the sign-in key stays out of the page's URL");
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name === "integrations_session");
  assert.ok(session, "a session cookie is set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(await page.evaluate(() => document.cookie), "", "the page's script cannot read the cookie");
});

await step("a signed-in browser is asked before a link replaces its session, and a link works once", async () => {
  const other = await context.newPage();
  await other.goto(env("SIGN_IN_LINK"));
  await other.getByText("This browser is signed in as u_browser.").waitFor();
  assert.ok(!other.url().includes("#"), "the key left the address bar before anything else");
  await other.getByRole("button", { name: "Sign in with this link" }).click();
  await other.getByText("already used").waitFor();
  await other.close();
});

await step("two groups, each row with its type, label, status and controls", async () => {
  const chat = page.getByRole("region", { name: "Notifications & chat" });
  const data = page.getByRole("region", { name: "Data sources" });
  await chat.getByRole("listitem", { name: "Email alerts@app.example" }).waitFor();
  await chat.getByRole("listitem", { name: "Slack VZ Finance" }).waitFor();
  await data.getByRole("listitem", { name: "Bank (Teller) PNC" }).waitFor();
  const chase = data.getByRole("listitem", { name: "Bank (Teller) Chase" });
  await chase.getByText("Needs reconnecting").waitFor();
  // Why, in the provider's words, and since when.
  await chase.getByText(/^The provider refused it since .+: Teller refused the access token \(401\)$/).waitFor();
  await chase.getByRole("button", { name: "Reconnect Bank (Teller) Chase" }).waitFor();
  await row("Slack VZ Finance").getByRole("button", { name: /^Scope: Specific agents: finance, coding/ }).waitFor();
  await row("Email alerts@app.example").getByRole("switch", { name: "Default (Email alerts@app.example)" }).waitFor();
  assert.equal(await row("Email alerts@app.example").getByRole("switch", { name: /^Default/ }).isChecked(), true);
  await page.getByRole("listitem", { name: "Secret BROKER_API_KEY" }).getByText("Value hidden").waitFor();
  // Gmail's client is configured, Slack's is not: only what can work is offered.
  await page.getByRole("button", { name: "Connect Gmail", exact: true }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Connect Slack", exact: true }).count(), 0);
});

if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/settings-integrations.png`, fullPage: true });

await step("a scope changed in the dialog: the running mcp-teller refuses its next call", async () => {
  const before = await tellerCall("teller_list_accounts", { enrollment_id: "enr_pnc" });
  assert.equal(before.isError, false, `granted before: ${JSON.stringify(before)}`);
  const pnc = row("Bank (Teller) PNC");
  await pnc.getByRole("button", { name: /^Scope: All agents/ }).click();
  const dialog = page.getByRole("dialog", { name: "Which agents may use this?" });
  await dialog.getByRole("radio", { name: "Specific agents" }).check();
  await dialog.getByRole("checkbox", { name: "Coding (coding)" }).check();
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/scope-dialog.png` });
  await dialog.getByRole("button", { name: "Save scope" }).click();
  await pnc.getByRole("button", { name: /^Scope: Specific agents: coding,/ }).waitFor();
  const after = await tellerCall("teller_list_accounts", { enrollment_id: "enr_pnc" });
  assert.equal(after.isError, true, `refused after: ${JSON.stringify(after)}`);
});

await step("an API error is shown as its message", async () => {
  const pnc = row("Bank (Teller) PNC");
  await pnc.getByRole("button", { name: /^Scope:/ }).click();
  const dialog = page.getByRole("dialog", { name: "Which agents may use this?" });
  await dialog.getByRole("checkbox", { name: "Coding (coding)" }).uncheck();
  await dialog.getByRole("button", { name: "Save scope" }).click();
  // The API refuses an `agents` scope with no profile; the page says why.
  await dialog.getByRole("alert").getByText(/profile/).waitFor();
  await dialog.getByRole("button", { name: "Cancel" }).click();
});

await step("Gmail connects through the fake Google and its row appears", async () => {
  await page.getByRole("button", { name: "Connect Gmail", exact: true }).click();
  await page.getByRole("link", { name: "Allow" }).click();
  await page.waitForURL(`${BASE}/settings/integrations`);
  await notice.getByText("Gmail is connected.").waitFor();
  await row("Gmail vz.finance@example.com").waitFor();
});

await step("disconnect asks first, says what was revoked, and the fake recorded the revocation", async () => {
  const revocations = (await recorded()).google_revocations;
  const gmail = row("Gmail vz.finance@example.com");
  await gmail.getByRole("button", { name: "Disconnect Gmail vz.finance@example.com" }).click();
  const dialog = page.getByRole("dialog", { name: "Disconnect?" });
  await dialog.getByRole("button", { name: "Keep it" }).click();
  await gmail.waitFor();
  await gmail.getByRole("button", { name: /^Disconnect/ }).click();
  await dialog.getByRole("button", { name: "Disconnect" }).click();
  await notice.getByText(/Gmail vz.finance@example.com is disconnected. Revoked at the provider/).waitFor();
  await gmail.waitFor({ state: "detached" });
  assert.equal((await recorded()).google_revocations, revocations + 1);
});

await step("a webhook added through its form passes its Test, which the receiver got", async () => {
  await page.getByRole("button", { name: "Add webhook" }).click();
  const dialog = page.getByRole("dialog", { name: "Add webhook" });
  await dialog.getByRole("textbox", { name: "URL" }).fill("ftp://example.com/hook");
  await dialog.getByRole("button", { name: "Add webhook" }).click();
  await dialog.getByRole("alert").getByText(/URL/).waitFor();
  await dialog.getByRole("textbox", { name: "URL" }).fill(`${env("WEBHOOK_RECEIVER_URL")}/hooks/browser`);
  await dialog.getByLabel(/Signing secret/).fill("whsec_QnJvd3NlclRlc3RTZWNyZXQxMjM0NTY3OA==");
  await dialog.getByRole("button", { name: "Add webhook" }).click();
  const hook = row("Webhook 127.0.0.1");
  await hook.waitFor();
  await hook.getByRole("button", { name: "Test Webhook 127.0.0.1" }).click();
  await hook.getByText(/^Test passed: /).waitFor();
  assert.ok((await recorded()).webhook_deliveries.includes("/hooks/browser"));
});

await step("a bank that needs reconnecting is reconnected through Teller Connect", async () => {
  const chase = row("Bank (Teller) Chase");
  await chase.getByRole("button", { name: "Reconnect Bank (Teller) Chase" }).click();
  await page.getByRole("dialog", { name: "Teller Connect" }).getByRole("button", { name: "Chase" }).click();
  await notice.getByText("Chase is connected.").waitFor();
  await chase.getByText("Active").waitFor();
  assert.equal(await chase.getByRole("button", { name: /^Reconnect/ }).count(), 0);
});

await step("a Telegram bot connects from a pasted BotFather token, and its pairing link is shown", async () => {
  await page.getByRole("button", { name: "Connect Telegram", exact: true }).click();
  const dialog = page.getByRole("dialog", { name: "Connect Telegram" });
  await dialog.getByLabel("Bot token").fill(env("TELEGRAM_BOT_TOKEN"));
  await dialog.getByRole("combobox", { name: "Route its messages to" }).selectOption({ label: "Finance (finance)" });
  await dialog.getByRole("button", { name: "Connect bot" }).click();
  await dialog.getByRole("link", { name: /^https:\/\/t\.me\/vz_test_bot\?start=/ }).waitFor();
  await dialog.getByRole("button", { name: "Close" }).click();
  await row("Telegram @vz_test_bot").waitFor();
});

await step("the Default switch makes a channel the default, and a secret is added for one agent", async () => {
  await row("Slack VZ Finance").getByRole("switch", { name: "Default (Slack VZ Finance)" }).check();
  await notice.getByText("Saved.").waitFor();
  await row("Email alerts@app.example").getByRole("switch", { name: /^Default/, checked: false }).waitFor();
  assert.equal(await row("Bank (Teller) PNC").getByRole("switch", { name: /^Default/ }).count(), 0, "a bank cannot be the default");
  await page.getByRole("button", { name: "Add secret" }).click();
  const dialog = page.getByRole("dialog", { name: "Add secret" });
  await dialog.getByRole("textbox", { name: "Name" }).fill("LEDGER_TOKEN");
  await dialog.getByLabel("Value").fill(env("NEW_SECRET_VALUE"));
  await dialog.getByRole("checkbox", { name: "Coding (coding)" }).check();
  await dialog.getByRole("button", { name: "Save secret" }).click();
  const secret = page.getByRole("listitem", { name: "Secret LEDGER_TOKEN" });
  await secret.getByRole("button", { name: /^Scope: Specific agents: coding,/ }).waitFor();
  await secret.getByRole("button", { name: "Replace value of LEDGER_TOKEN" }).click();
  const replace = page.getByRole("dialog", { name: "Replace the value of LEDGER_TOKEN" });
  await replace.getByLabel("Value").fill(`${env("NEW_SECRET_VALUE")}-2`);
  await replace.getByRole("button", { name: "Save secret" }).click();
  await notice.getByText("The value of LEDGER_TOKEN is replaced.").waitFor();
});

await step("a scope changed with the keyboard alone", async () => {
  await page.locator("body").focus();
  const target = /^Scope: All agents, for Email alerts@app.example$/;
  let name = "";
  for (let i = 0; i < 120 && !target.test(name); i += 1) {
    await page.keyboard.press("Tab");
    name = await page.evaluate(() => document.activeElement.getAttribute("aria-label") || "");
  }
  assert.match(name, target, "Tab reaches the email row's scope chip");
  await page.keyboard.press("Enter");
  const dialog = page.getByRole("dialog", { name: "Which agents may use this?" });
  await dialog.waitFor();
  // Focus starts on the checked radio; the arrow selects the next one.
  await page.keyboard.press("ArrowDown");
  assert.equal(await dialog.getByRole("radio", { name: "Specific agents" }).isChecked(), true);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Space");
  assert.equal(await dialog.getByRole("checkbox", { name: "Finance (finance)" }).isChecked(), true);
  for (let i = 0; i < 10; i += 1) {
    const label = await page.evaluate(() => document.activeElement.textContent);
    if (label === "Save scope") break;
    await page.keyboard.press("Tab");
  }
  await page.keyboard.press("Enter");
  await row("Email alerts@app.example").getByRole("button", { name: /^Scope: Specific agents: finance,/ }).waitFor();
  const focused = await page.evaluate(() => document.activeElement.getAttribute("aria-label"));
  assert.match(focused || "", /^Scope: Specific agents: finance, for Email/, "focus returns to the chip");
  const listed = await page.evaluate(async () => (await (await fetch("/v1/integrations?type=email")).json()).integrations[0]);
  assert.equal(listed.scope, "agents");
  assert.deepEqual(listed.profile_ids, ["prof_fin"]);
});

/** The roles of the controls in Chromium's accessibility tree that have no name. */
async function unnamedControls() {
  const cdp = await context.newCDPSession(page);
  const { nodes } = await cdp.send("Accessibility.getFullAXTree");
  await cdp.detach();
  const controls = ["button", "checkbox", "switch", "textbox", "link", "combobox", "radio", "listbox"];
  return nodes.filter((n) => !n.ignored && controls.includes(n.role && n.role.value)
    && !(n.name && n.name.value && n.name.value.trim())).map((n) => n.role.value);
}

await step("every control has an accessible name and is reachable with Tab", async () => {
  assert.deepEqual(await unnamedControls(), [], "controls without an accessible name");
  // And in every dialog, opened from the keyboard and closed with Escape.
  const openers = [
    page.getByRole("button", { name: "Add email", exact: true }),
    page.getByRole("button", { name: "Add webhook", exact: true }),
    page.getByRole("button", { name: "Connect Telegram", exact: true }),
    page.getByRole("button", { name: "Add secret", exact: true }),
    row("Bank (Teller) PNC").getByRole("button", { name: /^Scope:/ }),
    row("Bank (Teller) PNC").getByRole("button", { name: /^Disconnect/ }),
  ];
  for (const opener of openers) {
    await opener.focus();
    await page.keyboard.press("Enter");
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor();
    assert.deepEqual(await unnamedControls(), [], `controls without a name in ${await dialog.getAttribute("id")}`);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" }).catch(() => {});
    assert.equal(await page.locator("dialog[open]").count(), 0, "Escape closes the dialog");
  }
  const interactive = await page.evaluate(() => {
    const visible = (e) => e.offsetParent !== null && !e.closest("dialog:not([open])");
    return [...document.querySelectorAll("button, input, select, a[href]")].filter(visible).length;
  });
  const reached = new Set();
  await page.locator("body").focus();
  for (let i = 0; i < 400; i += 1) {
    await page.keyboard.press("Tab");
    const id = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      if (!e.dataset.tabProbe) e.dataset.tabProbe = String(Math.random());
      return e.dataset.tabProbe;
    });
    if (id && reached.has(id)) break;
    if (id) reached.add(id);
  }
  assert.equal(reached.size, interactive, "Tab reaches every visible control");
});

await step("an email through the person's own SMTP server is added in its form and passes its Test", async () => {
  const resend = row("Email alerts@app.example");
  await resend.getByRole("button", { name: /^Disconnect/ }).click();
  await page.getByRole("dialog", { name: "Disconnect?" }).getByRole("button", { name: "Disconnect" }).click();
  await resend.waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Add email", exact: true }).click();
  const dialog = page.getByRole("dialog", { name: "Add email" });
  assert.equal(await dialog.getByLabel("Host", { exact: true }).isVisible(), false, "Resend is the first choice");
  await dialog.getByRole("radio", { name: "My SMTP server" }).check();
  assert.equal(await dialog.getByLabel("Resend API key", { exact: true }).isVisible(), false);
  await dialog.getByLabel("Host", { exact: true }).fill("localhost");
  await dialog.getByLabel("Port", { exact: true }).fill(env("SMTP_TEST_PORT"));
  await dialog.getByLabel("Username", { exact: true }).fill(env("SMTP_TEST_USERNAME"));
  await dialog.getByLabel("Password", { exact: true }).fill(env("SMTP_TEST_PASSWORD"));
  await dialog.getByLabel("From address", { exact: true }).fill("alerts@example.com");
  await dialog.getByLabel("Send to", { exact: true }).fill("owner@example.com");
  await dialog.getByRole("button", { name: "Add email" }).click();
  const smtp = row("Email alerts@example.com");
  await smtp.waitFor();
  const listed = await page.evaluate(async () => (await (await fetch("/v1/integrations?type=email")).json()).integrations[0]);
  assert.equal(listed.config.provider, "smtp");
  assert.equal(listed.config.smtp_password, "********");
  await smtp.getByRole("button", { name: "Test Email alerts@example.com" }).click();
  await smtp.getByText(/^Test passed: /).waitFor();
  assert.equal((await recorded()).smtp_subjects.length, 1, "one message in the server's mailbox");
});

await step("nothing secret reached the browser", async () => {
  const html = await page.content();
  // Teller Connect (a third party's script) hands its access token to the
  // page by design; what this server sends must hold no secret.
  const ours = loaded.filter((r) => r.url.startsWith(BASE));
  const everything = [...ours, { url: "the live DOM", body: html }];
  assert.ok(ours.some((r) => r.url.endsWith("/v1/integrations")), "the integrations were loaded");
  for (const canary of CANARIES) {
    for (const { url, body } of everything) {
      assert.ok(!body.includes(canary), `a secret (${canary.slice(0, 6)}…) reached the browser in ${url}`);
    }
  }
});

await step("signing out ends the session", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("You are signed out.").waitFor();
  const status = await page.evaluate(async () => (await fetch("/v1/integrations")).status);
  assert.equal(status, 401);
});

await step("a state-changing request without the CSRF token is refused", async () => {
  await page.goto(env("SECOND_LINK"));
  await page.getByText("Signed in as u_browser").waitFor();
  const status = await page.evaluate(async () => (await fetch("/v1/secrets", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: "FORGED", value: "x" }),
  })).status);
  assert.equal(status, 403);
  await page.reload();
  await page.getByRole("listitem", { name: "Secret BROKER_API_KEY" }).waitFor();
  assert.equal(await page.getByRole("listitem", { name: "Secret FORGED" }).count(), 0);
});

await step("the page ran without a script error", async () => {
  assert.deepEqual(browserErrors, []);
});

await browser.close();
if (failures) {
  console.log(`${failures} step(s) failed`);
  process.exit(1);
}
console.log("the Settings page: every step passed");
