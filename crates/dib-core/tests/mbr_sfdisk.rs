//! MBR tables written by dib-core read back by util-linux's `sfdisk --json`: primaries, the
//! extended partition and the EBR chain of logicals, on a sparse 1 GiB image file (no loop
//! device). Skipped without sfdisk.

use std::process::Command;

use dib_core::mbr::{Layout, PartitionSpec};
use dib_core::size::Size;

fn spec(primary: bool, kind: u8, bootable: bool) -> PartitionSpec {
    PartitionSpec {
        name: "p".into(),
        size: Size::Bytes(10 << 20),
        primary,
        bootable,
        kind,
    }
}

/// A sparse 1 GiB image file in a temp dir (kept alive by the returned guard), or `None`
/// when sfdisk is not installed.
fn blank_image() -> Option<(tempfile::TempDir, std::path::PathBuf, std::fs::File)> {
    Command::new("sfdisk").arg("--version").output().ok()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("disk.raw");
    let file = std::fs::File::create(&image).expect("image");
    file.set_len(1 << 30).expect("size");
    Some((dir, image, file))
}

#[test]
fn sfdisk_reads_primaries_extended_and_logicals() {
    let Some((_dir, image, mut file)) = blank_image() else {
        eprintln!("skipped: no sfdisk");
        return;
    };
    let mut partitions = vec![
        spec(true, 0x83, true),
        spec(true, 0x0c, false),
        spec(true, 0x83, false),
    ];
    partitions.extend(std::iter::repeat_with(|| spec(false, 0x83, false)).take(7));
    let layout = Layout::plan(1 << 30, &partitions).expect("plans");
    layout.write(&mut file, 0x1234_5678).expect("writes");
    drop(file);
    let out = Command::new("sfdisk")
        .arg("--dump")
        .arg(&image)
        .output()
        .expect("sfdisk");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("label: dos"), "{dump}");
    assert!(dump.contains("label-id: 0x12345678"), "{dump}");
    // One line per partition: "<image>N : start= S, size= Z, type=T[, bootable]".
    let rows: Vec<(u32, u64, u64, String, bool)> = dump
        .lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| {
            let (device, fields) = l.split_once(" : ").expect("row");
            let number = device
                .trim()
                .trim_start_matches(&image.display().to_string())
                .parse()
                .expect("number");
            let field = |name: &str| {
                fields
                    .split(',')
                    .map(str::trim)
                    .find_map(|f| f.strip_prefix(name))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            (
                number,
                field("start=").parse().expect("start"),
                field("size=").parse().expect("size"),
                field("type="),
                fields.contains("bootable"),
            )
        })
        .collect();
    let expected: Vec<(u32, u64, u64, String, bool)> = layout
        .entries
        .iter()
        .map(|e| {
            (
                e.number,
                e.start,
                e.end - e.start + 1,
                format!("{:x}", e.kind),
                e.bootable,
            )
        })
        .collect();
    assert_eq!(rows, expected, "{dump}");
}

#[test]
fn sfdisk_reads_a_gpt_with_valid_checksums() {
    use dib_core::gpt::{guid_bytes, GptLayout, GptPartitionSpec};
    let Some((_dir, image, mut file)) = blank_image() else {
        eprintln!("skipped: no sfdisk");
        return;
    };
    let part = |name: &str, size: Size, code: &str, guid: &str| GptPartitionSpec {
        name: name.into(),
        size,
        type_code: code.into(),
        guid: guid_bytes(guid).expect("guid"),
    };
    let layout = GptLayout::plan(
        1 << 30,
        guid_bytes("11111111-2222-3333-4444-555555555555").expect("guid"),
        &[
            part(
                "ESP",
                Size::Bytes(8 << 20),
                "EF00",
                "AAAAAAAA-0000-4000-8000-000000000001",
            ),
            part(
                "BSP",
                Size::Bytes(8 << 20),
                "EF02",
                "AAAAAAAA-0000-4000-8000-000000000002",
            ),
            part(
                "Root Part",
                Size::Percent(100.0),
                "8300",
                "AAAAAAAA-0000-4000-8000-000000000003",
            ),
        ],
    )
    .expect("plans");
    layout.write(&mut file).expect("writes");
    drop(file);
    let out = Command::new("sfdisk")
        .arg("--dump")
        .arg(&image)
        .output()
        .expect("sfdisk");
    let dump = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{stderr}\n{dump}"
    );
    for expected in [
        "label: gpt",
        "label-id: 11111111-2222-3333-4444-555555555555",
        "first-lba: 34",
        "start=        2048, size=       16384, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=AAAAAAAA-0000-4000-8000-000000000001, name=\"ESP\"",
        "start=       18432, size=       16384, type=21686148-6449-6E6F-744E-656564454649, uuid=AAAAAAAA-0000-4000-8000-000000000002, name=\"BSP\"",
        "start=       34816, size=     2060288, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=AAAAAAAA-0000-4000-8000-000000000003, name=\"Root Part\"",
    ] {
        assert!(dump.contains(expected), "missing {expected:?} in\n{dump}");
    }
}
