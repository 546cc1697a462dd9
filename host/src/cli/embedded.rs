//! Files the `wdo` binary carries so that projects build anywhere, without this repository:
//! the WIT contract (for `wdo new` and the wrangler build) and the Cloudflare layer.

/// The contract between the host and its components.
pub const WIT: &str = include_str!("../../../wit/object.wit");
/// The WASI packages `wit/object.wit` uses (`wasi:http`, for outbound requests), as `wit/deps` has them.
pub const WIT_DEPS: &[(&str, &str)] = &[
    ("cli", include_str!("../../../wit/deps/cli/cli.wit")),
    ("clocks", include_str!("../../../wit/deps/clocks/clocks.wit")),
    ("filesystem", include_str!("../../../wit/deps/filesystem/filesystem.wit")),
    ("http", include_str!("../../../wit/deps/http/http.wit")),
    ("io", include_str!("../../../wit/deps/io/io.wit")),
    ("random", include_str!("../../../wit/deps/random/random.wit")),
    ("sockets", include_str!("../../../wit/deps/sockets/sockets.wit")),
];

/// The Cloudflare layer (`guest-sdk/js/cloudflare`) and its bundler script.
pub const CLOUDFLARE_SDK: &[(&str, &str)] = &[
    ("values.js", include_str!("../../../guest-sdk/js/cloudflare/values.js")),
    ("common.js", include_str!("../../../guest-sdk/js/cloudflare/common.js")),
    ("web.js", include_str!("../../../guest-sdk/js/cloudflare/web.js")),
    ("namespace.js", include_str!("../../../guest-sdk/js/cloudflare/namespace.js")),
    ("storage.js", include_str!("../../../guest-sdk/js/cloudflare/storage.js")),
    ("object.js", include_str!("../../../guest-sdk/js/cloudflare/object.js")),
    ("worker.js", include_str!("../../../guest-sdk/js/cloudflare/worker.js")),
    ("bundle.mjs", include_str!("../../../guest-sdk/js/cloudflare/bundle.mjs")),
];

/// Writes the WIT (with its WASI deps) under `dir`: `dir/object.wit`, `dir/deps/...`.
pub fn write_wit(dir: &std::path::Path) -> std::io::Result<()> {
    write_if_changed(&dir.join("object.wit"), WIT)?;
    for (package, text) in WIT_DEPS {
        write_if_changed(&dir.join("deps").join(package).join(format!("{package}.wit")), text)?;
    }
    Ok(())
}

/// Writes `text` to `path` unless it already holds it (builds running side by side share it).
pub fn write_if_changed(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Into place with a rename, so a reader never sees half a file.
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
