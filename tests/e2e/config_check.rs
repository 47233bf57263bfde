//! The command line around configs: every example under conf/ is valid, every
//! bad fixture is rejected by `check` and by `run` with all of its expected
//! messages (and `run` binds nothing), and `--version` answers.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// How long a `check`, or a `run` that must fail validation, may take.
const QUICK: Duration = Duration::from_secs(10);

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new(ext)))
        .collect();
    files.sort();
    files
}

fn spliced(command: &str, config: &Path) -> Output {
    run_bin(
        [OsStr::new(command), OsStr::new("-c"), config.as_os_str()],
        QUICK,
    )
}

#[test]
fn every_example_config_passes_check() {
    // conf/compose.yaml is the compose demo, not a spliced config
    // (deploy.rs checks it and the config it mounts).
    let examples: Vec<PathBuf> = files("conf", "yaml")
        .into_iter()
        .filter(|p| !p.ends_with("compose.yaml"))
        .collect();
    assert!(
        examples.len() >= 3,
        "expected the examples under conf/, found {examples:?}"
    );
    let mut failures = Vec::new();
    for file in &examples {
        let out = spliced("check", file);
        if out.code != Some(0) || !out.stdout.contains("configuration is valid") {
            failures.push(format!("{}: {out:?}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Lines of `expected` missing from `output`.
fn missing_lines<'a>(expected: &'a str, output: &str) -> Vec<&'a str> {
    expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !output.contains(l))
        .collect()
}

#[test]
fn every_bad_fixture_fails_check_and_run_with_its_messages() {
    let fixtures = files("tests/fixtures/bad", "yaml");
    assert!(fixtures.len() >= 10, "found only {fixtures:?}");
    let mut failures = Vec::new();
    for file in &fixtures {
        let expected_path = file.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        assert!(
            expected.lines().any(|l| !l.trim().is_empty()),
            "{} expects nothing",
            expected_path.display()
        );
        for command in ["check", "run"] {
            let out = spliced(command, file);
            let all = format!("{}{}", out.stdout, out.stderr);
            let missing = missing_lines(&expected, &all);
            let mut problems = Vec::new();
            if out.code != Some(1) {
                problems.push(format!("exit code {:?}, want 1", out.code));
            }
            if !missing.is_empty() {
                problems.push(format!("missing lines: {missing:#?}"));
            }
            // `run` must stop at validation, before binding anything.
            if command == "run"
                && ["listening", "cannot listen", "spliced started"]
                    .iter()
                    .any(|w| all.contains(w))
            {
                problems.push("got as far as binding".to_string());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "spliced {command} -c {}:\n  {}\n--- output:\n{all}",
                    file.display(),
                    problems.join("\n  ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn version_prints_the_package_version() {
    let out = run_bin(["--version"], QUICK);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("spliced {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_lists_certificates_with_their_expiry_and_names_a_broken_one() {
    let out = spliced("check", Path::new("conf/http.yaml"));
    assert_eq!(out.code, Some(0), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("tls \"main\":"))
        .unwrap_or_else(|| panic!("no certificate line: {out:?}"));
    assert!(line.contains("localhost"), "{line}");
    assert!(
        line.contains("valid until") && line.contains("expires in"),
        "{line}"
    );
    assert!(line.contains("sha256 "), "{line}");

    let dir = temp_dir();
    let cert = dir.join("site.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let config = dir.join("bad-cert.yaml");
    std::fs::write(
        &config,
        format!(
            "tls:\n  - name: main\n    certs: [{{ cert: {0}, key: {0} }}]\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:0, mode: http, tls: {{ store: main }}, pool: p }}\npools:\n  - {{ name: p, backends: [127.0.0.1:9] }}\n",
            cert.display()
        ),
    )
    .unwrap();
    let out = spliced("check", &config);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&cert.display().to_string()),
        "the error names the file: {out:?}"
    );
    let run = spliced("run", &config);
    assert_eq!(run.code, Some(1), "run refuses it too: {run:?}");
    assert!(run.stderr.contains("site.pem"), "{run:?}");
}
