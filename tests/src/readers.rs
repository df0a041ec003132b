//! Readers that are not ours (DuckDB through Python) run over landed bronze files.

/// Runs a Python script with DuckDB importable, `sys.argv[1]` being `root`; panics with its
/// output when it fails. Returns `false` (skipped) when DuckDB is missing and CI does not
/// require it (`TIDEMARK_REQUIRE_PY_READERS`).
pub fn duckdb_script(script: &str, root: &std::path::Path) -> bool {
    let have = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("TIDEMARK_REQUIRE_PY_READERS").is_none(),
            "duckdb required"
        );
        eprintln!("skipped: python3 with duckdb not installed");
        return false;
    }
    let out = std::process::Command::new("python3")
        .args(["-c", script, root.to_str().expect("utf-8 path")])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
