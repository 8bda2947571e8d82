//! Data-driven conformance: every case under `tests/fixtures/<case>/` (layout in that
//! folder's README) rendered with the ifcfg and ENI renderers over the case's fake NIC set,
//! compared byte for byte with the `--noop` output and exit status that upstream
//! os-net-config 18.1.0 produced (`tests/upstream/regen.sh`), or, where upstream is wrong
//! (`DEFECTS`), with the hand-written expectation. `invalid-*` cases must fail validation;
//! `expected/netconfig.errors` holds our messages.
//!
//! `NETCONFIG_BLESS=1` writes `expected/netconfig.errors`, and `expected/` of the providers a
//! case's `DEFECTS` names, from our output, for review.

use std::fs;
use std::path::{Path, PathBuf};

use netconfig::nics::{aliases, FixedNics, Nic};
use netconfig::render::noop_output;
use netconfig::{Eni, Ifcfg, Renderer, Severity};

const DEFAULT_NICS: &str = "em1=52:54:00:00:00:01 em2=52:54:00:00:00:02 em3=52:54:00:00:00:03 em4=52:54:00:00:00:04 eth0=52:54:00:00:00:10 eth1=52:54:00:00:00:11 enp3s0f0=52:54:00:00:00:20 ib0=52:54:00:00:00:30";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn nics(case: &Path) -> FixedNics {
    let spec = fs::read_to_string(case.join("nics")).unwrap_or_else(|_| DEFAULT_NICS.to_owned());
    FixedNics(
        spec.split_whitespace()
            .map(|entry| {
                let mut parts = entry.splitn(3, '=');
                let name = parts.next().unwrap_or_default().to_owned();
                let mac = parts.next().unwrap_or_default().to_owned();
                let active = parts.next().is_none_or(|s| s.eq_ignore_ascii_case("up"));
                Nic { name, mac, active }
            })
            .collect(),
    )
}

/// What we do with a case: (noop output, exit status as with --detailed-exit-codes), or the
/// error lines when it does not validate.
fn run(case: &Path, provider: &str) -> Result<(String, u8), Vec<String>> {
    let facts = nics(case);
    let mapping = match fs::read_to_string(case.join("mapping.yaml")) {
        Ok(text) => {
            let root = netconfig::parse(&text).map_err(|d| vec![format!("mapping.yaml:{d}")])?;
            netconfig::validate::mapping_entries(&root).map_err(|found| {
                found
                    .iter()
                    .map(|d| format!("mapping.yaml:{d}"))
                    .collect::<Vec<_>>()
            })?
        }
        Err(_) => Vec::new(),
    };
    let aliases = aliases(&facts, &mapping).map_err(|e| vec![format!("mapping.yaml: {e}")])?;
    let text = fs::read_to_string(case.join("config.yaml")).expect("config.yaml");
    let root = netconfig::parse(&text).map_err(|d| vec![format!("config.yaml:{d}")])?;
    let mut found = netconfig::validate(&root);
    found.extend(netconfig::validate::unresolved_aliases(&root, &aliases));
    found.sort_by_key(|d| (d.line, d.column));
    let errors: Vec<String> = found
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("config.yaml:{d}"))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    // `args`: extra flags of the case (only --persist-mapping changes rendering).
    let persist = fs::read_to_string(case.join("args"))
        .is_ok_and(|a| a.split_whitespace().any(|w| w == "--persist-mapping"));
    let config = if persist {
        netconfig::network_config_persistent(&root, &aliases, &facts)
    } else {
        netconfig::network_config(&root, &aliases)
    };
    let renderer: &dyn Renderer = match provider {
        "ifcfg" => &Ifcfg,
        "eni" => &Eni,
        other => panic!("unknown provider {other}"),
    };
    match renderer.render(&config, &facts) {
        Ok(files) => {
            let (out, changed) = noop_output(&files, "", |_| None);
            Ok((out, if changed > 0 { 2 } else { 0 }))
        }
        Err(e) => Ok((e.to_string(), 4)),
    }
}

#[test]
fn fixtures_match_upstream_or_the_documented_fix() {
    let dir = fixtures();
    let Ok(entries) = fs::read_dir(&dir) else {
        eprintln!("no fixtures yet");
        return;
    };
    let mut cases: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.yaml").is_file())
        .collect();
    cases.sort();
    let bless = std::env::var_os("NETCONFIG_BLESS").is_some();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("invalid-") {
            checked += 1;
            match run(case, "ifcfg") {
                Ok((out, rc)) if rc != 4 => {
                    failures.push(format!("{name}: validated (rc {rc}):\n{out}"))
                }
                Ok(_) => {}
                Err(errors) => {
                    let expected_path = case.join("expected/netconfig.errors");
                    let got = errors.join("\n") + "\n";
                    if bless {
                        fs::create_dir_all(case.join("expected")).expect("mkdir");
                        fs::write(&expected_path, &got).expect("bless");
                    } else if let Ok(expected) = fs::read_to_string(&expected_path) {
                        if expected != got {
                            failures.push(format!(
                                "{name}: errors differ\n--- expected\n{expected}--- got\n{got}"
                            ));
                        }
                    }
                }
            }
            continue;
        }
        let providers =
            fs::read_to_string(case.join("providers")).unwrap_or_else(|_| "ifcfg eni".to_owned());
        for provider in providers.split_whitespace() {
            // `DEFECTS` lines are `<provider>: D<n> ...`.
            let fixed = fs::read_to_string(case.join("DEFECTS"))
                .is_ok_and(|d| d.lines().any(|l| l.starts_with(&format!("{provider}:"))));
            if bless && fixed {
                if let Ok((out, got_rc)) = run(case, provider) {
                    // A refusal prints no files; its message is not output.
                    let out = if got_rc & 4 != 0 { String::new() } else { out };
                    fs::create_dir_all(case.join("expected")).expect("mkdir");
                    fs::write(case.join(format!("expected/{provider}.noop")), &out).expect("bless");
                    fs::write(
                        case.join(format!("expected/{provider}.rc")),
                        format!("{got_rc}\n"),
                    )
                    .expect("bless");
                }
                continue;
            }
            let (Ok(expected), Ok(rc)) = (
                fs::read_to_string(case.join(format!("expected/{provider}.noop"))),
                fs::read_to_string(case.join(format!("expected/{provider}.rc"))),
            ) else {
                continue;
            };
            checked += 1;
            let expected_rc: u8 = rc.trim().parse().expect("rc");
            if fixed {
                // A documented defect must still be one: upstream's recorded output differs.
                let upstream = fs::read_to_string(case.join(format!("upstream/{provider}.noop")));
                let upstream_rc = fs::read_to_string(case.join(format!("upstream/{provider}.rc")));
                if upstream.as_deref().ok() == Some(expected.as_str())
                    && upstream_rc.as_deref().map(str::trim).ok() == Some(rc.trim())
                {
                    failures.push(format!(
                        "{name} [{provider}]: DEFECTS, but upstream's output is the expected one"
                    ));
                }
            }
            match run(case, provider) {
                Err(errors) => failures.push(format!(
                    "{name} [{provider}]: refused:\n{}",
                    errors.join("\n")
                )),
                Ok((out, got_rc)) => {
                    // Upstream fails (4) where the renderer cannot express the config; we
                    // refuse the same configs, so only the status is compared then.
                    if expected_rc & 4 != 0 {
                        if got_rc & 4 == 0 {
                            failures.push(format!("{name} [{provider}]: upstream fails with {expected_rc}, we render:\n{out}"));
                        }
                    } else if out != expected || got_rc != expected_rc {
                        failures.push(format!(
                            "{name} [{provider}]: rc {got_rc} (expected {expected_rc})\n--- expected\n{expected}--- got\n{out}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{checked} fixture checks passed");
}
