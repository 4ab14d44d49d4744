//! Build steps of the frontend (x.sh runs them after the WASM build):
//!
//! - `split-wasm split INPUT OUT_DIR` splits the frontend's WASM at its lazy routes (`#[lazy_route]`
//!   in `frontend/src/lib.rs`). It writes `OUT_DIR/frontend_split.wasm` (the main module, for
//!   wasm-bindgen), one module per route and per set of routes that share code, and `__wasm_split.js`,
//!   which fetches and links them. The input must be linked with `--emit-relocs`. The splitter gives
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
const COMPRESSIBLE: &[&str] = &["js", "wasm", "css", "svg", "html", "json"];

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
        total += stripped.len();
        std::fs::write(path, stripped).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "split-wasm: {} modules beside the main one, {} KB in all",
        output.split_modules.len(),
        total / 1024
    );
    Ok(())
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
