//! What this binary is: version, git revision and compiler, fixed at build time.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from, or `unknown` outside a checkout.
pub const REVISION: &str = env!("PCE_BUILD_REVISION");

/// The rustc version that compiled the binary.
pub const RUST_VERSION: &str = env!("PCE_BUILD_RUSTC_VERSION");

/// What `--version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("PCE_BUILD_REVISION"),
    ", rustc: ",
    env!("PCE_BUILD_RUSTC_VERSION"),
    ")"
);
