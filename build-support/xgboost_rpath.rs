// Shared by the build scripts of every package whose binaries link libxgboost (included with
// `include!`). The `xgb` crate builds libxgboost from source as a shared library inside the
// cargo target folder and does not tell dependents where; without an rpath the binaries fail
// at start with "error while loading shared libraries: libxgboost.so". The package must depend
// directly on `xgboost_lib-sys` (a `links` crate): cargo then runs its build script first.
fn xgboost_rpath() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(out_dir) = std::env::var("OUT_DIR") else {
        return;
    };
    // OUT_DIR = <target>/<profile>/build/<package>-<hash>/out
    let Some(build_dir) = std::path::Path::new(&out_dir).ancestors().nth(2) else {
        return;
    };
    let mut newest: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(build_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("xgboost_lib-sys-") {
                continue;
            }
            let lib_dir = entry.path().join("out").join("lib");
            let Ok(meta) = std::fs::metadata(lib_dir.join("libxgboost.so")) else {
                continue;
            };
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, lib_dir));
            }
        }
    }
    // $ORIGIN/../lib and $ORIGIN: where an installed binary finds a copied library.
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib:$ORIGIN");
    match newest {
        Some((_, dir)) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display()),
        None => println!("cargo:warning=libxgboost.so not found under {}", build_dir.display()),
    }
}
