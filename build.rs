//! Records the git revision and the compiler version for `--version` and
//! `partner_center_exporter_build_info`.

use std::process::Command;

fn main() {
    let revision = std::env::var("PARTNER_CENTER_EXPORTER_REVISION")
        .ok()
        .filter(|value| !value.is_empty())
        .or_else(|| command_output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rust_version = command_output(&rustc, &["--version"])
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PCE_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=PCE_BUILD_RUSTC_VERSION={rust_version}");
    println!("cargo:rerun-if-env-changed=PARTNER_CENTER_EXPORTER_REVISION");
    // A new commit changes HEAD or the ref it points to. Git says where
    // they are: in a worktree `.git` is a file, and HEAD lives in the
    // worktree's own directory while the refs are shared. A path that does
    // not exist (no git, or a build context without .git) would make cargo
    // run this script on every build, so only existing ones are watched.
    let git_dir = command_output("git", &["rev-parse", "--git-dir"]);
    let common_dir = command_output("git", &["rev-parse", "--git-common-dir"]);
    let watched = [
        git_dir.as_deref().map(|dir| format!("{dir}/HEAD")),
        common_dir.as_deref().map(|dir| format!("{dir}/refs/heads")),
        common_dir
            .as_deref()
            .map(|dir| format!("{dir}/packed-refs")),
    ];
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
