// A stand-in for Teller Connect (https://cdn.teller.io/connect/connect.js),
// served by the fake Teller at /connect/connect.js: the same
// `TellerConnect.setup(options).open()`, a picker of the fake's two banks in
// a dialog of the page, and `onSuccess` with the object Teller Connect hands
// over (`accessToken`, `user`, `enrollment`, `signatures`); `onExit` on cancel.
"use strict";
(() => {
  const banks = [
    { id: "enr_pnc", token: "test_token_pnc", name: "PNC" },
    { id: "enr_chase", token: "test_token_chase", name: "Chase" },
  ];
  window.TellerConnect = {
    setup(options) {
      if (!options || !options.applicationId) throw new Error("TellerConnect.setup: applicationId is required");
      if (!["sandbox", "development", "production"].includes(options.environment || "sandbox")) {
        throw new Error("TellerConnect.setup: unknown environment");
      }
      return {
        open() {
          const dialog = document.createElement("dialog");
          dialog.setAttribute("aria-label", "Teller Connect");
          const title = document.createElement("h2");
          title.textContent = "Select your institution";
          dialog.append(title);
          const finish = (then) => { dialog.close(); dialog.remove(); then(); };
          for (const bank of banks) {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = bank.name;
            button.addEventListener("click", () => finish(() => options.onSuccess({
              accessToken: bank.token,
              user: { id: "usr_fake_teller_user" },
              enrollment: { id: bank.id, institution: { name: bank.name } },
              signatures: [],
            })));
            dialog.append(button);
          }
          const cancel = document.createElement("button");
          cancel.type = "button";
          cancel.textContent = "Cancel";
          cancel.addEventListener("click", () => finish(() => options.onExit && options.onExit()));
          dialog.append(cancel);
          document.body.append(dialog);
          dialog.showModal();
        },
      };
    },
  };
})();
