//! Entry point of the WASM bundle: mounts the app on the page.

fn main() {
    leptos::mount::mount_to_body(frontend::App);
}
