//! The `local` and `heat_local` collectors on real directories (spec §6.3, §6.4).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use metadata_applier::collect::{CollectContext, Collector, HeatLocal, Local, SourceError};
use metadata_applier::json;

const M: &str = r#"{"localstrA":"A","localint9":9,"localmap_xy":{"x":42,"y":"foo"}}"#;

fn context() -> CollectContext {
    CollectContext {
        cache_dir: PathBuf::from("/nonexistent"),
    }
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

fn local(paths: &[&Path]) -> Result<Vec<(String, String)>, SourceError> {
    let mut collector = Local {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
    };
    collector.collect(&context()).map(|entries| {
        entries
            .into_iter()
            .map(|(k, v)| (k, json::dumps(&v)))
            .collect()
    })
}

#[test]
fn local_reads_every_file_as_a_key() {
    let dir = private_dir();
    fs::write(dir.path().join("test.json"), M).expect("write");
    fs::write(dir.path().join(".hidden"), "{}").expect("write");
    fs::create_dir(dir.path().join("subdir")).expect("mkdir");
    let entries = local(&[dir.path()]).expect("collect");
    assert_eq!(
        entries,
        [(
            "test.json".to_owned(),
            json::dumps(&json::parse(M).unwrap())
        )]
    );
}

#[test]
fn local_orders_keys_bytewise_across_directories() {
    let (a, b) = (private_dir(), private_dir());
    fs::write(
        b.path().join("99test.json"),
        r#"{"localstrA":"Z","localint9":9}"#,
    )
    .expect("write");
    fs::write(a.path().join("00test.json"), M).expect("write");
    fs::write(b.path().join("Capital"), "{}").expect("write");
    let keys: Vec<String> = local(&[b.path(), a.path()])
        .expect("collect")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["00test.json", "99test.json", "Capital"]);
}

#[test]
fn local_refuses_unsafe_sources() {
    let dir = private_dir();
    let file = dir.path().join("test.json");
    fs::write(&file, M).expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(
        matches!(local(&[dir.path()]), Err(SourceError::NotAvailable(r)) if r.contains("is world writable. This is a security risk."))
    );

    let dir = private_dir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(
        matches!(local(&[dir.path()]), Err(SourceError::NotAvailable(r)) if r.contains("is world writable"))
    );

    let dir = private_dir();
    fs::write(dir.path().join("bad.json"), "{").expect("write");
    assert!(
        matches!(local(&[dir.path()]), Err(SourceError::NotAvailable(r)) if r.contains("is not valid JSON"))
    );
}

#[test]
fn local_refuses_a_directory_owned_by_someone_else() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED local_refuses_a_directory_owned_by_someone_else: needs root to chown");
        return;
    }
    let dir = private_dir();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(dir.path(), Some(nobody), None).expect("chown");
    assert!(
        matches!(local(&[dir.path()]), Err(SourceError::NotAvailable(r)) if r.contains("is owned by another user. This is a security risk."))
    );
}

#[test]
fn local_missing_directory_has_no_keys() {
    assert_eq!(local(&[Path::new("/this/doesnt/exist")]), Ok(Vec::new()));
    assert!(local(&[]).is_err());
}

#[test]
fn heat_local_merges_files_and_needs_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cfn-init-data");
    fs::write(&file, M).expect("write");
    let mut collector = HeatLocal {
        paths: vec![file.clone(), file.clone()],
    };
    let entries = collector.collect(&context()).expect("collect");
    assert_eq!(entries[0].0, "heat_local");
    assert_eq!(
        json::dumps(&entries[0].1),
        json::dumps(&json::parse(M).unwrap())
    );

    fs::write(&file, "{'invalid' => 'INVALID'}").expect("write");
    assert!(matches!(
        HeatLocal { paths: vec![file] }.collect(&context()),
        Err(SourceError::NotAvailable(_))
    ));
    let missing = dir.path().join("missing");
    assert!(matches!(
        HeatLocal {
            paths: vec![missing]
        }
        .collect(&context()),
        Err(SourceError::NotAvailable(_))
    ));
}
