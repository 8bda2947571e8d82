//! Snapshot cases for the renderers no upstream tool produces (networkd, nm-keyfile):
//! `tests/snapshots/<renderer>-<case>/config.yaml` rendered over em1..em4 must give
//! `expected.noop` exactly. The expectations were reviewed by hand against systemd.network(5),
//! nm-settings-keyfile(5) and the spec's netplan and nmstate references; the networkd files
//! are also read by the real systemd-networkd in `tests/networkd.rs`.

use std::fs;
use std::path::Path;

mod support;

use netconfig::nics::{aliases, FixedNics};
use netconfig::{noop_output, Networkd, NmKeyfile, Renderer};

fn facts() -> FixedNics {
    support::nics(&["em1", "em2", "em3", "em4"])
}

#[test]
fn snapshots_match() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    let facts = facts();
    let aliases = aliases(&facts, &[]).expect("aliases");
    for case in cases {
        let name = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let renderer: &dyn Renderer = if name.starts_with("networkd-") {
            &Networkd
        } else if name.starts_with("nm-keyfile-") {
            &NmKeyfile
        } else {
            panic!("{name}: unknown renderer prefix");
        };
        let text = fs::read_to_string(case.join("config.yaml")).expect("config");
        let root = netconfig::parse(&text).expect("parses");
        assert!(netconfig::validate(&root).is_empty(), "{name}: invalid");
        let config = netconfig::network_config(&root, &aliases);
        let files = renderer.render(&config, &facts).expect("renders");
        if name.starts_with("nm-keyfile-") {
            assert!(
                files.iter().all(|f| f.mode == 0o600),
                "{name}: keyfiles must be 0600"
            );
        }
        let (got, _) = noop_output(&files, "", |_| None);
        let expected = fs::read_to_string(case.join("expected.noop")).expect("expected");
        assert_eq!(got, expected, "{name}");
    }
}
