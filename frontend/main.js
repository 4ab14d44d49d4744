// Loads the WASM app. Kept out of index.html so the Content-Security-Policy needs no inline script.
import init from "/frontend.js";
init({ module_or_path: "/frontend_bg.wasm" }).then(() => {
  const boot = document.getElementById("boot");
  if (boot) boot.remove();
}).catch((e) => {
  const boot = document.getElementById("boot");
  if (boot) boot.textContent = "imds-console could not start: " + e;
});

// A panic in the app is a WebAssembly trap (the build aborts on panic), after which the page no
// longer answers: say so and offer the reload, instead of a page that silently stops responding.
function stopped(error) {
  if (!(error instanceof WebAssembly.RuntimeError) || document.getElementById("console-stopped")) return;
  const box = document.createElement("div");
  box.id = "console-stopped";
  box.setAttribute("role", "alert");
  box.textContent = "This page of imds-console stopped working after an error in it. "
    + "What was started or saved is kept by the server. ";
  const reload = document.createElement("button");
  reload.textContent = "Reload the page";
  reload.addEventListener("click", () => location.reload());
  box.append(reload);
  document.body.append(box);
}
window.addEventListener("error", (e) => stopped(e.error));
window.addEventListener("unhandledrejection", (e) => stopped(e.reason));

// Dialogs (aria-modal) take the focus, keep Tab inside, cancel on Escape and give the focus back.
// Here, not in the WASM: fewer bytes on every page's first load.
let opener = null;
const dialog = () => document.querySelector("[aria-modal=true]");
const stops = (d) => [...d.querySelectorAll("a[href],button,input,select,textarea")].filter((e) => !e.disabled);
new MutationObserver(() => {
  const d = dialog(), active = document.activeElement;
  if (d && !d.contains(active)) {
    opener = opener || active;
    (stops(d)[0] || d).focus();
  } else if (!d && opener) {
    (opener.isConnected ? opener : document.getElementById("main")).focus();
    opener = null;
  }
}).observe(document.body, { childList: true, subtree: true });
document.addEventListener("keydown", (e) => {
  const d = dialog();
  if (!d) return;
  if (e.key === "Escape") d.querySelector("#modal-cancel")?.click();
  if (e.key !== "Tab") return;
  const s = stops(d), at = document.activeElement;
  if (!s.length || !d.contains(at) || at === (e.shiftKey ? s[0] : s[s.length - 1])) {
    e.preventDefault();
    (e.shiftKey ? s[s.length - 1] : s[0])?.focus();
  }
});
