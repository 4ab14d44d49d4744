// Loads the WASM app. Kept out of index.html so the Content-Security-Policy needs no inline script.
import init from "/frontend.js";
init({ module_or_path: "/frontend_bg.wasm" }).then(() => {
  const boot = document.getElementById("boot");
  if (boot) boot.remove();
}).catch((e) => {
  const boot = document.getElementById("boot");
  if (boot) boot.textContent = "imds-console could not start: " + e;
});
