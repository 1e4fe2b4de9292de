//! Build script of `rdkafka-ll`.
//!
//! librdkafka itself is built and linked by the `rdkafka-sys` crate. This
//! script only checks the version of a system librdkafka (feature
//! `dynamic-linking`) and, with the feature `bindgen`, regenerates the
//! bindings from the headers of the librdkafka that is linked.

use std::env;
use std::path::PathBuf;

/// Version of the librdkafka headers that `src/bindings.rs` was generated
/// from. Keep in step with the `+x.y.z` suffix of this crate's version.
#[cfg(feature = "dynamic-linking")]
const BINDINGS_VERSION: &str = "2.12.1";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RDKAFKA_LL_WRITE_BINDINGS");
    println!("cargo::rustc-check-cfg=cfg(rdkafka_ll_generated)");

    let include_dirs = linked_include_dirs();

    #[cfg(feature = "bindgen")]
    generate::bindings(&include_dirs);
    #[cfg(not(feature = "bindgen"))]
    let _ = include_dirs;
}

/// Finds the folders that contain `librdkafka/rdkafka.h` of the linked
/// librdkafka, checking a system library's version on the way.
#[cfg(feature = "dynamic-linking")]
fn linked_include_dirs() -> Vec<PathBuf> {
    let library = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("rdkafka")
        .unwrap_or_else(|error| {
            panic!("failed to find a system librdkafka with pkg-config: {error}")
        });

    if version_tuple(&library.version) < version_tuple(BINDINGS_VERSION) {
        panic!(
            "the system librdkafka is version {}, older than {} that rdkafka-ll's \
             bindings were generated from; install librdkafka {} or newer, or build \
             without the `dynamic-linking` feature to use the bundled librdkafka",
            library.version, BINDINGS_VERSION, BINDINGS_VERSION
        );
    }

    library.include_paths
}

/// Finds the folders that contain `librdkafka/rdkafka.h` of the linked
/// librdkafka.
#[cfg(not(feature = "dynamic-linking"))]
fn linked_include_dirs() -> Vec<PathBuf> {
    // rdkafka-sys publishes the folder of the librdkafka source tree it
    // built from (`cargo:root`), except in its CMake build.
    match env::var_os("DEP_RDKAFKA_ROOT") {
        Some(root) => vec![PathBuf::from(root).join("src")],
        None => Vec::new(),
    }
}

/// Parses "2.12.1" (or "2.12.1-RC1") into a comparable tuple.
#[cfg(feature = "dynamic-linking")]
fn version_tuple(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

#[cfg(feature = "bindgen")]
mod generate {
    use std::env;
    use std::fs;
    use std::path::{Path, PathBuf};

    use bindgen::callbacks::{IntKind, ParseCallbacks};

    /// Runs bindgen over `rdkafka.h` and `rdkafka_mock.h`, writes the result
    /// to `$OUT_DIR/bindings.rs` and makes `lib.rs` include it.
    pub fn bindings(include_dirs: &[PathBuf]) {
        let header_dir = find_header_dir(include_dirs);
        let rdkafka_h = header_dir.join("rdkafka.h");
        let mock_h = header_dir.join("rdkafka_mock.h");
        println!("cargo:rerun-if-changed={}", rdkafka_h.display());
        println!("cargo:rerun-if-changed={}", mock_h.display());

        let bindings = bindgen::Builder::default()
            .header(rdkafka_h.to_string_lossy())
            .header(mock_h.to_string_lossy())
            .clang_arg(format!("-I{}", header_dir.display()))
            // Everything declared by librdkafka's headers, and the types
            // they use, but not the rest of libc.
            .allowlist_file(r".*/rdkafka(_mock)?\.h")
            // The C library types that appear in callback signatures come
            // from the libc crate, so they match what other crates use.
            .blocklist_type("FILE|_IO_.*|sockaddr|sa_family_t|addrinfo|mode_t|__.*")
            .raw_line("use libc::{addrinfo, mode_t, sockaddr, FILE};")
            .parse_callbacks(Box::new(MacroTypes))
            // C enums become integer constants with their C names: a Rust
            // enum holding a value it does not list is undefined behaviour,
            // and librdkafka and brokers add codes over time.
            .default_enum_style(bindgen::EnumVariation::Consts)
            .prepend_enum_name(false)
            .size_t_is_usize(true)
            .layout_tests(true)
            .derive_default(true)
            .generate_comments(true)
            .formatter(bindgen::Formatter::Prettyplease)
            .generate()
            .expect("bindgen failed to generate the librdkafka bindings");

        let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
            .join("bindings.rs");
        bindings
            .write_to_file(&out)
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", out.display()));
        println!("cargo:rustc-cfg=rdkafka_ll_generated");

        // The update script requests a copy where the committed file lives.
        if let Some(copy) = env::var_os("RDKAFKA_LL_WRITE_BINDINGS") {
            fs::copy(&out, &copy).unwrap_or_else(|error| {
                panic!("failed to copy the bindings to {:?}: {error}", copy)
            });
        }
    }

    /// Gives each `#define` constant the C type of the parameter it is
    /// passed as, so callers need no casts, and keeps doc comments from
    /// turning into Markdown code blocks or doctests.
    #[derive(Debug)]
    struct MacroTypes;

    impl ParseCallbacks for MacroTypes {
        fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
            const TYPED_PREFIXES: [(&str, IntKind); 6] = [
                ("RD_KAFKA_OFFSET_", IntKind::I64),
                ("RD_KAFKA_MSG_F_", IntKind::Int),
                ("RD_KAFKA_PURGE_F_", IntKind::Int),
                ("RD_KAFKA_EVENT_", IntKind::Int),
                ("RD_KAFKA_DESTROY_F_", IntKind::Int),
                ("RD_KAFKA_VERSION", IntKind::Int),
            ];
            TYPED_PREFIXES
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|(_, kind)| *kind)
        }

        fn process_comment(&self, comment: &str) -> Option<String> {
            // Doxygen indents continuation lines, which Markdown would read
            // as code blocks.
            let lines: Vec<&str> = comment.lines().map(str::trim).collect();
            Some(lines.join("\n"))
        }
    }

    fn find_header_dir(include_dirs: &[PathBuf]) -> PathBuf {
        for dir in include_dirs {
            for candidate in [dir.to_path_buf(), dir.join("librdkafka")] {
                if Path::new(&candidate).join("rdkafka_mock.h").is_file() {
                    return candidate;
                }
            }
        }
        panic!(
            "the feature `bindgen` needs the headers of the linked librdkafka, but \
             rdkafka_mock.h was not found in {include_dirs:?}; the CMake build of \
             rdkafka-sys does not publish them, so use the default build"
        );
    }
}
