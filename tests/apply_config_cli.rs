//! Data-driven conformance of `os-apply-config` (the example) against the cases in
//! `tests/fixtures/apply-config/`, and a live differential run of the cases marked `same`
//! against upstream os-apply-config 14.1.0 (`scripts/regen-apply-config-fixtures.sh`
//! regenerates their expectations). `$OAC` in `cmd` is the fixtures' `oac-sandbox` wrapper,
//! which runs `$REAL_OAC` with a private /var/log: both tools log there when run as root.

mod common;

use common::Tools;

const TOOLS: [(&str, &str); 1] = [("REAL_OAC", "os-apply-config")];

fn with_sandbox(tools: Tools) -> Tools {
    tools.with("OAC", common::fixtures("apply-config").join("oac-sandbox"))
}

#[test]
fn conformance_cases() {
    common::conformance(
        &common::fixtures("apply-config"),
        &with_sandbox(Tools::ours(&TOOLS)),
    );
}

#[test]
fn differential_against_upstream() {
    common::differential(
        &common::fixtures("apply-config"),
        "OAC_UPSTREAM_VENV",
        Tools::upstream("OAC_UPSTREAM_VENV", &TOOLS).map(with_sandbox),
        &with_sandbox(Tools::ours(&TOOLS)),
    );
}

const COLLECT: [(&str, &str); 1] = [("OCC", "os-collect-config")];

/// The os-collect-config cases of `tests/fixtures/collect-config/` (`$OCC` in `cmd`).
#[test]
fn collect_config_cases() {
    common::conformance(&common::fixtures("collect-config"), &Tools::ours(&COLLECT));
}

/// The collect-config cases marked `same`, live against upstream os-collect-config 14.1.0.
#[test]
fn collect_config_differential() {
    common::differential(
        &common::fixtures("collect-config"),
        "OCC_UPSTREAM_VENV",
        Tools::upstream("OCC_UPSTREAM_VENV", &COLLECT),
        &Tools::ours(&COLLECT),
    );
}
