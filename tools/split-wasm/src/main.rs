//! Build steps of the frontend (x.sh runs them after the WASM build):
//!
//! - `split-wasm split INPUT OUT_DIR` splits the frontend's WASM at its split functions (a page's, in
//!   `frontend/src/lib.rs`, or a part's). It writes `OUT_DIR/frontend_split.wasm` (the main module, for
//!   wasm-bindgen), one module per route and per set of routes that share code, one `ROUTE.bundle`
//!   per route with all the modules it needs (see `bundle_routes`), and `__wasm_split.js`, which
//!   fetches and links them. The input must be linked with `--emit-relocs`. The splitter gives
//!   every chunk a name section, which only debuggers use; it is dropped here, as wasm-bindgen's
//!   `--remove-name-section` drops the main module's.
//! - `split-wasm precompress DIR` writes `name.br` (brotli, quality 11) and `name.gz` (gzip, level 9)
//!   beside every asset under DIR, where that is smaller, so the server sends those bytes as they
//!   are: smaller than it could afford to compress per request, and no work per request.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["split", input, out_dir] => split(Path::new(input), Path::new(out_dir)),
        ["precompress", dir] => precompress(Path::new(dir)),
        _ => {
            eprintln!("usage: split-wasm split INPUT.wasm OUT_DIR | split-wasm precompress DIR");
            return ExitCode::from(2);
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("split-wasm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The assets worth compressing (images other than SVG are compressed already).
const COMPRESSIBLE: &[&str] = &["js", "wasm", "css", "svg", "html", "json", "bundle"];

fn precompress(dir: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    let (mut raw, mut brotli_total, mut gzip_total) = (0, 0, 0);
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !COMPRESSIBLE.contains(&ext) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        raw += bytes.len();
        let br = brotli_of(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let gz = gzip_of(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        for (suffix, packed, total) in [("br", br, &mut brotli_total), ("gz", gz, &mut gzip_total)] {
            *total += packed.len().min(bytes.len());
            if packed.len() < bytes.len() {
                let mut name = path.clone().into_os_string();
                name.push(format!(".{suffix}"));
                std::fs::write(&name, packed).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    eprintln!(
        "split-wasm: precompressed {} KB of assets: {} KB brotli, {} KB gzip",
        raw / 1024,
        brotli_total / 1024,
        gzip_total / 1024
    );
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn brotli_of(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        // Quality 11 and a 4 MB window: the strongest brotli, affordable once per build.
        let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, 22);
        writer.write_all(bytes)?;
    }
    Ok(out)
}

fn gzip_of(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn split(input: &Path, out_dir: &Path) -> Result<(), String> {
    let wasm = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let main_out = out_dir.join("frontend_split.wasm");
    let output = wasm_split_cli_support::transform({
        let mut options = wasm_split_cli_support::Options::new(&wasm);
        options.output_dir = out_dir;
        options.main_out_path = &main_out;
        // wasm-bindgen writes the main module's loader as frontend.js beside the chunks.
        options.main_module = "./frontend.js";
        options.link_name = "./__wasm_split.js";
        options
    })
    .map_err(|e| format!("splitting {}: {e:#}", input.display()))?;
    let mut total = 0;
    for module in &output.split_modules {
        let path = module.as_path();
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stripped = without_custom_sections(&bytes).ok_or_else(|| {
            format!(
                "{}: not a WASM module the splitter could have written",
                path.display()
            )
        })?;
        let stripped = only_used_types(&stripped).map_err(|e| format!("{}: {e}", path.display()))?;
        total += stripped.len();
        std::fs::write(path, stripped).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "split-wasm: {} modules beside the main one, {} KB in all",
        output.split_modules.len(),
        total / 1024
    );
    bundle_routes(out_dir, &output.prefetch_map)
}

/// Each route's modules (its own and every chunk it needs) also as one file, `ROUTE.bundle`, which
/// the loader fetches instead of the modules one by one when most of them are not loaded yet (a
/// page opened first, by a link or a reload). A page needs 40-140 modules; one by one, each pays its
/// own HTTP response headers, and each is compressed alone, without the others' repeats: the execute
/// page's 139 modules were 133 KB brotli one by one, 90 KB as one file, plus about 40 KB of headers.
/// The modules stay as they are for pages opened later, which need only the ones not loaded yet.
fn bundle_routes(
    out_dir: &Path,
    routes: &std::collections::HashMap<String, Vec<String>>,
) -> Result<(), String> {
    let loader_path = out_dir.join("__wasm_split.js");
    let loader =
        std::fs::read_to_string(&loader_path).map_err(|e| format!("{}: {e}", loader_path.display()))?;
    // Every chunk's loader is the same five lines but for its number (306 of them, most of the
    // loader): they go, and `chunk(n)` makes each when it is first needed.
    let mut loader = rewrite_each(&loader, "const __chunk_", |after| {
        let (n, tail) = after
            .split_once(' ')
            .ok_or("__wasm_split.js: a chunk loader without its number")?;
        let own = format!("= makeLoad(() => {{\n    {FETCH_START}chunk_{n}.wasm{FETCH_END}\n}}\n, []);\n");
        let tail = tail.strip_prefix(&own).ok_or_else(|| {
            format!("__wasm_split.js: the loader of chunk {n} is not the one this tool knows (a chunk that needs others, or wasm_split_cli_support changed?)")
        })?;
        Ok((String::new(), tail))
    })?;
    let mut names: Vec<&String> = routes.keys().collect();
    names.sort();
    let mut bundles = 0;
    for split in names {
        let stems = &routes[split];
        let Some(route) = stems.last().filter(|s| s.ends_with(split.as_str())) else {
            continue; // a route with no code of its own: nothing to fetch
        };
        // The bundle: a JSON line of [module file, length] pairs, then the modules one after
        // another. The loader names the chunks by number, so that the lists cost it little.
        let mut contents = Vec::new();
        let mut index = Vec::new();
        let mut chunks = Vec::new();
        for stem in stems {
            let file = format!("{stem}.wasm");
            let bytes = std::fs::read(out_dir.join(&file)).map_err(|e| format!("{file}: {e}"))?;
            index.push(format!("[\"{file}\",{}]", bytes.len()));
            contents.extend_from_slice(&bytes);
            if stem != route {
                chunks.push(
                    stem.strip_prefix("chunk_")
                        .ok_or_else(|| format!("{split}: {stem} is neither the route nor a chunk"))?
                        .to_string(),
                );
            }
        }
        let mut bundle = format!("[{}]\n", index.join(",")).into_bytes();
        bundle.extend_from_slice(&contents);
        std::fs::write(out_dir.join(format!("{route}.bundle")), &bundle)
            .map_err(|e| format!("{route}.bundle: {e}"))?;
        // The route's loader, from the table above: its chunk list once, in the call.
        let export = format!("export const __wasm_split_load_{split} = wrapAsyncCb(makeLoad(");
        let at = loader
            .find(&export)
            .ok_or_else(|| format!("__wasm_split.js: no loader for the route {split}"))?;
        let end = at
            + loader[at..]
                .find("]));\n")
                .ok_or_else(|| format!("__wasm_split.js: the loader of {split} does not end"))?
            + 4;
        loader.replace_range(
            at..end,
            &format!(
                "export const __wasm_split_load_{split} = route(\"{route}\", \"{}\");",
                chunks.join(" ")
            ),
        );
        bundles += 1;
    }
    // Whatever loader is left (a split with no code of its own) fetches through `wasmSource`, which
    // takes a module's bytes from a bundle if one was fetched for it, and names chunks by number.
    let mut modules = 0;
    let loader = rewrite_each(&loader, FETCH_START, |after| {
        let (file, tail) = after
            .split_once('"')
            .ok_or("__wasm_split.js: a fetch without its file's name")?;
        let tail = tail.strip_prefix(&FETCH_END[1..]).ok_or_else(|| {
            format!("__wasm_split.js: the fetch of {file} is not the one this tool knows (wasm_split_cli_support changed?)")
        })?;
        modules += 1;
        Ok((format!("return wasmSource(\"{file}\");"), tail))
    })?;
    let mut loader = rewrite_each(&loader, "__chunk_", |after| {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        Ok((format!("chunk({})", &after[..digits]), &after[digits..]))
    })?;
    // The splitter names, above each chunk, every route that uses it: 60 % of the loader's bytes,
    // for debugging only.
    loader = loader
        .lines()
        .filter(|line| !(line.starts_with("/* __") && line.ends_with(" */")))
        .fold(String::with_capacity(loader.len()), |mut kept, line| {
            kept.push_str(line);
            kept.push('\n');
            kept
        });
    let import_end = loader
        .find(";\n")
        .ok_or("__wasm_split.js: no import of the main module")?
        + 2;
    loader.insert_str(import_end, BUNDLE_RUNTIME);
    std::fs::write(&loader_path, loader).map_err(|e| format!("{}: {e}", loader_path.display()))?;
    eprintln!("split-wasm: {bundles} route bundles; {modules} other module fetches in the loader");
    Ok(())
}

/// `text` with each `marker` and what follows it replaced: `rewrite` gets the text after the marker
/// and returns the replacement and the rest it did not consume. One pass, whatever the count.
fn rewrite_each<'a>(
    text: &'a str,
    marker: &str,
    mut rewrite: impl FnMut(&'a str) -> Result<(String, &'a str), String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(marker) {
        out.push_str(&rest[..start]);
        let (replacement, tail) = rewrite(&rest[start + marker.len()..])?;
        out.push_str(&replacement);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The fetch of one module as wasm_split_cli_support 0.2.4 writes it (web target, release).
const FETCH_START: &str = "const src = fetch(new URL(\"./";
const FETCH_END: &str = "\", import.meta.url));
    src.catch(() => {});
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));";

/// The loader's side of the route bundles.
const BUNDLE_RUNTIME: &str = r#"
// Route bundles (tools/split-wasm): a route's modules in one file, fetched when most of them are
// not loaded yet, and handed out by module.
const bundled = new Map(); // module file -> Promise<Uint8Array>, until its module is instantiated
const asked = new Set(); // module files already fetched, alone or in a bundle
// A file of the bundle, fetched again after 0.5 s and 2 s while the network or the server fails;
// the last answer, good or not, is the caller's to refuse (the app then offers a reload).
async function fetched(file) {
    const url = new URL("./" + file, import.meta.url);
    for (const wait of [500, 2000]) {
        try {
            const r = await fetch(url);
            if (r.ok) return r;
        } catch (e) {}
        await new Promise((done) => setTimeout(done, wait));
    }
    return fetch(url);
}
function wasmSource(file) {
    asked.add(file);
    const bytes = bundled.get(file);
    if (bytes !== undefined) {
        bundled.delete(file);
        return async (imports) => WebAssembly.instantiate(await bytes, imports);
    }
    const src = fetched(file);
    src.catch(() => {});
    return async (imports) => (WebAssembly.instantiateStreaming(src, imports));
}
const chunkLoads = new Map(); // chunk number -> its loader, made when first needed
function chunk(n) {
    let load = chunkLoads.get(n);
    if (load === undefined) {
        load = makeLoad(() => wasmSource("chunk_" + n + ".wasm"), []);
        chunkLoads.set(n, load);
    }
    return load;
}
// A route's (or a lazy function's) loader: its module after the chunks it needs ("3 12"), from its
// bundle when most of them are not loaded yet.
function route(name, chunks) {
    const deps = chunks ? chunks.split(" ").map(Number).map(chunk) : [];
    return wrapAsyncCb(withBundle(name, chunks, makeLoad(() => wasmSource(name + ".wasm"), deps)));
}
function withBundle(route, chunks, load) {
    return () => {
        const files = (chunks ? chunks.split(" ") : []).map((n) => "chunk_" + n + ".wasm").concat(route + ".wasm");
        const missing = files.filter((file) => !asked.has(file) && !bundled.has(file));
        if (missing.length * 2 > files.length) {
            const parts = fetched(route + ".bundle").then(async (r) => {
                if (!r.ok) throw new Error(route + ".bundle: HTTP " + r.status);
                const b = new Uint8Array(await r.arrayBuffer());
                const end = b.indexOf(10);
                const parts = new Map();
                let at = end + 1;
                for (const [file, length] of JSON.parse(new TextDecoder().decode(b.subarray(0, end)))) {
                    parts.set(file, b.subarray(at, at + length));
                    at += length;
                }
                return parts;
            });
            for (const file of missing) {
                const bytes = parts.then((p) => {
                    if (!p.has(file)) throw new Error(route + ".bundle lacks " + file);
                    return p.get(file);
                });
                // A failed bundle is forgotten, so that a retry fetches the modules themselves.
                bytes.catch(() => { if (bundled.get(file) === bytes) bundled.delete(file); });
                bundled.set(file, bytes);
            }
        }
        return load();
    };
}
"#;

/// The module with only the function types it uses. The splitter copies the main module's whole
/// type section (hundreds of signatures) into every chunk, and most chunks hold a few functions:
/// about a quarter of a page's compressed chunk bytes were unused types. Every reference to a type
/// (functions, imports, `call_indirect`, block types) is renumbered; the rest is re-encoded as is.
fn only_used_types(module: &[u8]) -> Result<Vec<u8>, String> {
    use wasm_encoder::reencode::{Error, Reencode};

    /// Pass 1: which types are referred to (the identity mapping, noting each index asked for).
    #[derive(Default)]
    struct Used(std::collections::BTreeSet<u32>);
    impl Reencode for Used {
        type Error = std::convert::Infallible;
        fn type_index(&mut self, ty: u32) -> Result<u32, Error<Self::Error>> {
            self.0.insert(ty);
            Ok(ty)
        }
    }

    /// Pass 2: the used types alone, in their order, and every reference renumbered.
    struct Renumber(std::collections::BTreeMap<u32, u32>);
    impl Reencode for Renumber {
        type Error = std::convert::Infallible;
        fn type_index(&mut self, ty: u32) -> Result<u32, Error<Self::Error>> {
            Ok(self.0[&ty])
        }
        fn parse_type_section(
            &mut self,
            types: &mut wasm_encoder::TypeSection,
            section: wasmparser::TypeSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            for (index, group) in (0u32..).zip(section) {
                let group = group?;
                if self.0.contains_key(&index) {
                    self.parse_recursive_type_group(types.ty(), group)?;
                }
            }
            Ok(())
        }
    }

    let mut used = Used::default();
    used.parse_core_module(
        &mut wasm_encoder::Module::new(),
        wasmparser::Parser::new(0),
        module,
    )
    .map_err(|e| format!("reading the module: {e:?}"))?;
    let mut renumber = Renumber(
        used.0
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new as u32))
            .collect(),
    );
    let mut out = wasm_encoder::Module::new();
    renumber
        .parse_core_module(&mut out, wasmparser::Parser::new(0), module)
        .map_err(|e| format!("rewriting the module: {e:?}"))?;
    let bytes = out.finish();
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .map_err(|e| format!("the rewritten module does not validate: {e}"))?;
    Ok(bytes)
}

/// The module without its custom sections (id 0: names, producers). Every other section is copied
/// byte for byte, so nothing that links or runs changes. `None` if the bytes are not a WASM module.
fn without_custom_sections(module: &[u8]) -> Option<Vec<u8>> {
    const HEADER: usize = 8; // "\0asm" and the version
    if module.get(..4)? != b"\0asm" {
        return None;
    }
    let mut out = module.get(..HEADER)?.to_vec();
    let mut at = HEADER;
    while at < module.len() {
        let id = module[at];
        let (size, body) = leb128_u32(module, at + 1)?;
        let end = body.checked_add(size as usize)?;
        if end > module.len() {
            return None;
        }
        if id != 0 {
            out.extend_from_slice(&module[at..end]);
        }
        at = end;
    }
    Some(out)
}

/// An unsigned LEB128 number at `at`: its value and where the bytes after it start.
fn leb128_u32(bytes: &[u8], mut at: usize) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_sections_go_and_the_others_stay_byte_for_byte() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        // a type section (id 1) of 4 bytes, a custom "name" section of 6, a code section (id 10) of 1
        module.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
        module.extend_from_slice(&[0, 6, 4, b'n', b'a', b'm', b'e', 0]);
        module.extend_from_slice(&[10, 1, 0]);
        let stripped = without_custom_sections(&module).unwrap();
        assert_eq!(stripped, b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x0a\x01\0");
    }

    #[test]
    fn each_route_gets_one_bundle_of_its_modules_and_the_loader_takes_bytes_from_it() {
        let dir = std::env::temp_dir().join(format!("split-wasm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let modules = [
            ("chunk_3", &b"\0asm-three"[..]),
            ("chunk_12", b"\0asm-twelve"),
            ("split___a_route_view_1", b"\0asm-route"),
        ];
        let mut loader =
            String::from("import { initSync } from \"./frontend.js\";\n\nfunction makeLoad() {}\n");
        for (stem, bytes) in modules {
            std::fs::write(dir.join(format!("{stem}.wasm")), bytes).unwrap();
            if let Some(n) = stem.strip_prefix("chunk_") {
                loader.push_str(&format!(
                    "/* __a_route_view_1 */\nconst __chunk_{n} = makeLoad(() => {{\n    {FETCH_START}{stem}.wasm{FETCH_END}\n}}\n, []);\n"
                ));
            }
        }
        loader.push_str(&format!(
            "export const __wasm_split_load___a_route_view_1 = wrapAsyncCb(makeLoad(() => {{\n    {FETCH_START}split___a_route_view_1.wasm{FETCH_END}\n}}\n, [__chunk_3, __chunk_12]));\n"
        ));
        std::fs::write(dir.join("__wasm_split.js"), &loader).unwrap();
        let routes = std::collections::HashMap::from([(
            "__a_route_view_1".to_string(),
            modules.iter().map(|(stem, _)| stem.to_string()).collect(),
        )]);

        bundle_routes(&dir, &routes).unwrap();

        let bundle = std::fs::read(dir.join("split___a_route_view_1.bundle")).unwrap();
        let header_end = bundle.iter().position(|b| *b == b'\n').unwrap();
        assert_eq!(
            std::str::from_utf8(&bundle[..header_end]).unwrap(),
            r#"[["chunk_3.wasm",10],["chunk_12.wasm",11],["split___a_route_view_1.wasm",10]]"#
        );
        assert_eq!(&bundle[header_end + 1..], b"\0asm-three\0asm-twelve\0asm-route");
        let js = std::fs::read_to_string(dir.join("__wasm_split.js")).unwrap();
        // Only `fetched` fetches a module or a bundle, again while the network or the server fails.
        assert_eq!(js.matches("fetch(").count(), 2, "{js}");
        assert_eq!(js.matches("fetched(").count(), 3, "{js}");
        assert!(js.contains(
            "export const __wasm_split_load___a_route_view_1 = route(\"split___a_route_view_1\", \"3 12\");\n"
        ));
        // The chunks' loaders are made from their numbers when first needed.
        assert!(!js.contains("__chunk_"), "{js}");
        assert!(js.contains("load = makeLoad(() => wasmSource(\"chunk_\" + n + \".wasm\"), []);"));
        assert!(!js.contains("/* __"), "the routes' comments stay:\n{js}");
        assert!(js.starts_with("import { initSync } from \"./frontend.js\";\n\n// Route bundles"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn precompressed_files_decode_to_the_original() {
        use std::io::Read;
        let text = "imds-console ".repeat(500).into_bytes();
        let mut back = Vec::new();
        brotli::Decompressor::new(&brotli_of(&text).unwrap()[..], 4096)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzip_of(&text).unwrap()[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn unused_types_go_and_every_reference_follows_the_new_numbers() {
        use wasm_encoder::ValType::I32;
        // Types: 0 () -> (), 1 (i32) -> (), 2 () -> i32 (unused), 3 (i32, i32) -> i32.
        // Function 0 has type 3 and calls through the table with type 1; function 1 has type 0.
        let mut module = wasm_encoder::Module::new();
        let mut types = wasm_encoder::TypeSection::new();
        types.ty().function([], []);
        types.ty().function([I32], []);
        types.ty().function([], [I32]);
        types.ty().function([I32, I32], [I32]);
        module.section(&types);
        let mut funcs = wasm_encoder::FunctionSection::new();
        funcs.function(3);
        funcs.function(0);
        module.section(&funcs);
        let mut tables = wasm_encoder::TableSection::new();
        tables.table(wasm_encoder::TableType {
            element_type: wasm_encoder::RefType::FUNCREF,
            minimum: 1,
            maximum: None,
            table64: false,
            shared: false,
        });
        module.section(&tables);
        let mut code = wasm_encoder::CodeSection::new();
        let mut f = wasm_encoder::Function::new([]);
        f.instructions()
            .local_get(0)
            .i32_const(0)
            .call_indirect(0, 1)
            .local_get(1)
            .end();
        code.function(&f);
        let mut g = wasm_encoder::Function::new([]);
        g.instructions().end();
        code.function(&g);
        module.section(&code);
        let before = module.finish();
        let after = only_used_types(&before).unwrap();
        assert!(after.len() < before.len());
        let (mut types, mut function_types, mut indirect) = (0, Vec::new(), Vec::new());
        for payload in wasmparser::Parser::new(0).parse_all(&after) {
            match payload.unwrap() {
                wasmparser::Payload::TypeSection(r) => types = r.count(),
                wasmparser::Payload::FunctionSection(r) => {
                    function_types = r.into_iter().map(|t| t.unwrap()).collect();
                }
                wasmparser::Payload::CodeSectionEntry(body) => {
                    for op in body.get_operators_reader().unwrap() {
                        if let wasmparser::Operator::CallIndirect { type_index, .. } = op.unwrap() {
                            indirect.push(type_index);
                        }
                    }
                }
                _ => {}
            }
        }
        // The unused () -> i32 is gone; the others keep their order: 0, 1, 3 become 0, 1, 2.
        assert_eq!(types, 3);
        assert_eq!(function_types, [2, 0]);
        assert_eq!(indirect, [1]);
    }

    #[test]
    fn what_is_not_a_module_is_refused() {
        assert_eq!(without_custom_sections(b"not wasm"), None);
        // a section longer than the file
        assert_eq!(without_custom_sections(b"\0asm\x01\0\0\0\x01\x09\x00"), None);
    }

    #[test]
    fn sizes_over_127_take_several_bytes() {
        assert_eq!(leb128_u32(&[0xe5, 0x8e, 0x26], 0), Some((624_485, 3)));
        assert_eq!(leb128_u32(&[0x80], 0), None);
    }
}
