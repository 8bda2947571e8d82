//! qcow2 images written by dib-core read back by QEMU's own `qemu-img`: for raw inputs of
//! several shapes, compressed and not, `qemu-img check` finds no errors or leaks, `qemu-img
//! compare` finds the guest data identical to the raw file, `qemu-img info` reports the same
//! virtual size, a version 3 zlib image and no dirty flag, and the output is the same bytes
//! whatever the number of threads or the entry point. Skipped (saying so) without qemu-img
//! (Debian: qemu-utils).

use std::fs::File;
use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dib_core::qcow2::{convert_raw, write_qcow2, Qcow2Options, Qcow2Stats};

const MIB: u64 = 1 << 20;

fn have_qemu_img() -> bool {
    Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn qemu_img(args: &[&str]) -> Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs")
}

/// Deterministic noise (xorshift64), incompressible for deflate.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Compressible but not trivially so: numbered text lines.
fn text(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(
            format!("line {line}: the quick brown fox {}\n", line * 7919 % 1000).as_bytes(),
        );
        line += 1;
    }
    bytes.truncate(len);
    bytes
}

/// A sparse file of `len` bytes with `parts` written at their offsets.
fn raw_file(dir: &Path, name: &str, len: u64, parts: &[(u64, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let file = File::create(&path).expect("raw file");
    file.set_len(len).expect("raw size");
    for (offset, bytes) in parts {
        file.write_all_at(bytes, *offset).expect("raw data");
    }
    path
}

/// The virtual size QEMU gives the raw file (its size rounded up to 512 bytes).
fn raw_virtual_size(raw: &Path) -> u64 {
    let info = qemu_img(&["info", "-f", "raw", "--output=json", raw.to_str().unwrap()]);
    assert!(info.status.success());
    json_number(&String::from_utf8_lossy(&info.stdout), "virtual-size")
}

/// A top-level number of `qemu-img info --output=json` (its pretty printer indents the top
/// level by four spaces; the child nodes have keys of the same names deeper in).
fn json_number(json: &str, key: &str) -> u64 {
    let needle = format!("\n    \"{key}\": ");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("{key} in {json}"))
        + needle.len();
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

fn convert(raw: &Path, out: &Path, compress: bool, threads: usize) -> Qcow2Stats {
    let options = Qcow2Options {
        compress,
        threads,
        ..Qcow2Options::default()
    };
    convert_raw(raw, out, &options).unwrap_or_else(|e| panic!("converting {}: {e}", raw.display()))
}

/// Converts `raw` compressed and not, checks each image with qemu-img and checks that thread
/// counts do not change a byte.
fn check_shape(raw: &Path) {
    let dir = raw.parent().unwrap();
    let size = raw_virtual_size(raw);
    for compress in [false, true] {
        let out = dir.join(format!("out-{compress}.qcow2"));
        let stats = convert(raw, &out, compress, 2);
        let name = out.to_str().unwrap();
        let what = format!("{} (compress: {compress})", raw.display());

        let check = qemu_img(&["check", "-f", "qcow2", name]);
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "qemu-img check {what}: {report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            report.contains("No errors were found on the image."),
            "{what}: {report}"
        );
        assert!(!report.contains("leaked"), "{what}: {report}");

        let compare = qemu_img(&[
            "compare",
            "-f",
            "raw",
            "-F",
            "qcow2",
            raw.to_str().unwrap(),
            name,
        ]);
        assert!(
            compare.status.success(),
            "qemu-img compare {what}: {}{}",
            String::from_utf8_lossy(&compare.stdout),
            String::from_utf8_lossy(&compare.stderr)
        );

        let info = qemu_img(&["info", "-f", "qcow2", "--output=json", name]);
        assert!(info.status.success());
        let json = String::from_utf8_lossy(&info.stdout);
        assert_eq!(json_number(&json, "virtual-size"), size, "{what}: {json}");
        assert!(json.contains("\"compat\": \"1.1\""), "{what}: {json}");
        assert!(
            json.contains("\"compression-type\": \"zlib\""),
            "{what}: {json}"
        );
        assert!(json.contains("\"refcount-bits\": 16"), "{what}: {json}");
        assert!(
            json.contains("\n    \"dirty-flag\": false"),
            "{what}: {json}"
        );
        assert!(json.contains("\"corrupt\": false"), "{what}: {json}");

        assert_eq!(stats.virtual_size, size, "{what}");
        assert_eq!(
            stats.file_size,
            std::fs::metadata(&out).unwrap().len(),
            "{what}"
        );
        if !compress {
            assert_eq!(stats.compressed_clusters, 0, "{what}");
        }

        // Deterministic: again, with one thread and with three.
        let bytes = std::fs::read(&out).unwrap();
        for threads in [1, 3] {
            let again = dir.join(format!("again-{compress}-{threads}.qcow2"));
            assert_eq!(convert(raw, &again, compress, threads), stats, "{what}");
            assert!(
                std::fs::read(&again).unwrap() == bytes,
                "{what}: threads {threads} differ"
            );
            std::fs::remove_file(&again).unwrap();
        }
        // The streaming writer (a plain reader, no holes skipped, no mapping) agrees.
        let options = Qcow2Options {
            compress,
            threads: 2,
            ..Qcow2Options::default()
        };
        let len = std::fs::metadata(raw).unwrap().len();
        let mut streamed = Cursor::new(Vec::new());
        let input = File::open(raw).unwrap();
        assert_eq!(
            write_qcow2(input, len, &mut streamed, &options).unwrap(),
            stats
        );
        assert!(
            streamed.into_inner() == bytes,
            "{what}: streamed image differs"
        );
    }
}

#[test]
fn sparse_with_scattered_data() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![
        (0, text(3000)),
        (MIB + 100, noise(1, 70_000)),
        (5 * MIB, text(MIB as usize)),
        (9 * MIB - 10, noise(2, 20)), // straddles a cluster boundary
        (20 * MIB, noise(3, MIB as usize / 2)),
        (20 * MIB + MIB / 2, text(MIB as usize / 2)), // compressed right after raw
        (23 * MIB + 4096, vec![0xff; 4096]),
        (40 * MIB, vec![0; MIB as usize]), // written zeros: not allocated
        (63 * MIB + MIB / 2, text(MIB as usize / 2)),
    ];
    let raw = raw_file(dir.path(), "sparse.raw", 64 * MIB, &parts);
    check_shape(&raw);
    let stats = convert(&raw, &dir.path().join("c.qcow2"), true, 2);
    assert!(stats.compressed_clusters > 0 && stats.compressed_clusters < stats.allocated_clusters);
}

#[test]
fn random_incompressible_data() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_file(
        dir.path(),
        "random.raw",
        2 * MIB,
        &[(0, noise(4, 2 * MIB as usize))],
    );
    check_shape(&raw);
    // Deflate cannot shrink noise: every cluster is stored as it is.
    let stats = convert(&raw, &dir.path().join("c.qcow2"), true, 2);
    assert_eq!(stats.allocated_clusters, 32);
    assert_eq!(stats.compressed_clusters, 0);
}

#[test]
fn all_zeros() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Written zeros (allocated in the raw file) and a hole.
    let raw = raw_file(
        dir.path(),
        "zeros.raw",
        16 * MIB,
        &[(0, vec![0; 8 * MIB as usize])],
    );
    check_shape(&raw);
    for compress in [false, true] {
        let stats = convert(&raw, &dir.path().join("z.qcow2"), compress, 2);
        assert_eq!(stats.allocated_clusters, 0);
        // Header, one L1 cluster, refcount table and block.
        assert_eq!(stats.file_size, 4 * 65536);
    }
}

#[test]
fn empty_input() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_file(dir.path(), "empty.raw", 0, &[]);
    check_shape(&raw);
}

#[test]
fn size_not_a_multiple_of_the_cluster_size() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A multiple of 512 but not of the cluster size, and one that is not even a multiple
    // of 512 (QEMU rounds it up to whole sectors).
    for (name, len) in [
        ("sectors.raw", 2 * MIB + 7 * 512),
        ("bytes.raw", MIB + 12345),
    ] {
        let sub = dir.path().join(name.trim_end_matches(".raw"));
        std::fs::create_dir(&sub).unwrap();
        let parts = [
            (0, text(len as usize / 2)),
            (len / 2, noise(5, (len - len / 2) as usize)),
        ];
        let raw = raw_file(&sub, name, len, &parts);
        check_shape(&raw);
        let stats = convert(&raw, &sub.join("c.qcow2"), true, 2);
        assert_eq!(stats.virtual_size, len.next_multiple_of(512));
    }
}

#[test]
fn data_at_the_very_last_byte() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let len = 32 * MIB;
    let raw = raw_file(dir.path(), "last.raw", len, &[(len - 1, vec![0xa5])]);
    check_shape(&raw);
    for compress in [false, true] {
        let stats = convert(&raw, &dir.path().join("l.qcow2"), compress, 2);
        assert_eq!(stats.allocated_clusters, 1);
        assert_eq!(stats.compressed_clusters, u64::from(compress));
    }
}

#[test]
fn one_gib_sparse_with_a_few_mib_of_data() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let parts = vec![
        (MIB, text(MIB as usize / 2)),
        (300 * MIB, noise(6, MIB as usize / 4)),
        (512 * MIB - 1000, text(5000)), // across the first L2 table's reach
        (1023 * MIB, text(MIB as usize / 4)),
    ];
    let raw = raw_file(dir.path(), "big.raw", 1 << 30, &parts);
    check_shape(&raw);
    let stats = convert(&raw, &dir.path().join("b.qcow2"), false, 2);
    assert_eq!(stats.allocated_clusters, 8 + 4 + 2 + 4);
}

#[test]
fn missing_input_names_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("no-such.raw");
    let out = dir.path().join("out.qcow2");
    let err = convert_raw(&raw, &out, &Qcow2Options::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}: ", raw.display())),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn unwritable_output_names_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_file(dir.path(), "in.raw", MIB, &[(0, text(1000))]);
    let out = dir.path().join("missing-dir").join("out.qcow2");
    let err = convert_raw(&raw, &out, &Qcow2Options::default()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("{}: ", out.display())),
        "{err}"
    );

    // A directory in the way of the rename: the temporary file is removed.
    let out = dir.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"").unwrap();
    let err = convert_raw(&raw, &out, &Qcow2Options::default()).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("{}: ", out.display())),
        "{err}"
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["in.raw", "taken"]);
}

#[test]
fn invalid_cluster_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_file(dir.path(), "in.raw", MIB, &[]);
    let out = dir.path().join("out.qcow2");
    let options = Qcow2Options {
        cluster_size: 1000,
        ..Qcow2Options::default()
    };
    let err = convert_raw(&raw, &out, &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cluster size 1000 is not a power of two from 512 to 2097152",
            out.display()
        )
    );
    assert!(!out.exists());
}

#[test]
fn other_cluster_sizes() {
    if !have_qemu_img() {
        eprintln!("skipped: no qemu-img (Debian package qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        (0, text(300_000)),
        (400_000, noise(7, 100_000)),
        (2 * MIB, text(MIB as usize)),
    ];
    let raw = raw_file(dir.path(), "in.raw", 4 * MIB + 512, &parts);
    for cluster_size in [512, 4096, 2 << 20] {
        for compress in [false, true] {
            let out = dir.path().join(format!("{cluster_size}-{compress}.qcow2"));
            let options = Qcow2Options {
                compress,
                cluster_size,
                threads: 2,
            };
            convert_raw(&raw, &out, &options).unwrap();
            let name = out.to_str().unwrap();
            let check = qemu_img(&["check", "-f", "qcow2", name]);
            assert!(
                check.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&check.stdout)
            );
            let compare = qemu_img(&[
                "compare",
                "-f",
                "raw",
                "-F",
                "qcow2",
                raw.to_str().unwrap(),
                name,
            ]);
            assert!(
                compare.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&compare.stdout)
            );
            let info = qemu_img(&["info", "-f", "qcow2", "--output=json", name]);
            let json = String::from_utf8_lossy(&info.stdout);
            assert_eq!(
                json_number(&json, "cluster-size"),
                u64::from(cluster_size),
                "{json}"
            );
        }
    }
}
