//! The image pipeline of dib-core, stage by stage: element expansion over the bundled
//! elements, planning the default MBR layout, archiving a tree (tar, initramfs), making an
//! ext4 filesystem from it at an offset in an image (`mke2fs -d`, the floor dib-core adds
//! nothing to), and converting a raw image to qcow2 with and without compression next to
//! `qemu-img convert` on the same input. `scripts/bench-dib.sh` times whole builds against
//! upstream disk-image-create and `scripts/bench-qcow2.sh` prints the qcow2 ratios.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use dib_core::blockdev::{layouts, Graph, Params};
use dib_core::qcow2::{convert_raw, Qcow2Options};
use dib_core::{expand, ElementSet};

fn elements(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/elements");
    c.bench_function("elements/load + expand bundled", |b| {
        b.iter(|| {
            let set = ElementSet::load(path).expect("elements");
            expand(&set, &["base", "host-minimal", "demo", "block-device-gpt"])
                .expect("expand")
                .len()
        })
    });
    c.bench_function("blockdev/load + plan mbr on 2 GiB", |b| {
        b.iter(|| {
            let graph = Graph::load(layouts::MBR, &Params::default()).expect("graph");
            let ids = |_: dib_core::reproducible::Purpose, _: &str| [7u8; 16];
            graph.plan(2 << 30, &ids).expect("plan")
        })
    });
}

/// A tree of `files` small files in 20 folders, like a minimal OS's /usr.
fn tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("usr/share/d{:02}", i % 20));
        fs::create_dir_all(&dir).expect("mkdir");
        let body: String = (0..(i % 50 + 1))
            .map(|j| format!("line {j} of file {i}\n"))
            .collect();
        fs::write(dir.join(format!("f{i}")), body).expect("write");
    }
}

fn archives(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("tree");
    tree(&root, 2000);
    let mut group = c.benchmark_group("archive 2000 files");
    group.sample_size(20);
    group.bench_function("tar", |b| {
        let out = dir.path().join("t.tar");
        b.iter(|| dib_core::image::write_tar(&root, &out, false, Some(0), None).expect("tar"))
    });
    group.bench_function("initramfs (cpio.gz)", |b| {
        let out = dir.path().join("t.initramfs");
        b.iter(|| dib_core::image::write_initramfs(&root, &out, Some(0), None).expect("cpio"))
    });
    group.bench_function("mke2fs -d at an offset", |b| {
        let image = dir.path().join("fs.raw");
        b.iter(|| {
            let file = fs::File::create(&image).expect("image");
            file.set_len(64 << 20).expect("size");
            let status = Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-E", "offset=1048576", "-d"])
                .arg(&root)
                .arg(&image)
                .arg("63M")
                .status()
                .expect("mke2fs");
            assert!(status.success());
        })
    });
    group.finish();
}

/// 64 MiB raw: 24 MiB of text-like data scattered in 1 MiB runs, the rest holes.
fn raw_image(path: &Path) {
    let mut file = fs::File::create(path).expect("raw");
    file.set_len(64 << 20).expect("size");
    let chunk: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| {
            b"abcdefghij klmnop qrstuvwxyz\n"[(i.wrapping_mul(2654435761) >> 27) as usize % 29]
        })
        .collect();
    for i in 0..24u64 {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(i * (5 << 19)))
            .expect("seek");
        file.write_all(&chunk).expect("write");
    }
}

fn qcow2(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("in.raw");
    raw_image(&raw);
    let out = dir.path().join("out.qcow2");
    let mut group = c.benchmark_group("raw to qcow2, 64 MiB with 24 MiB of data");
    group.sample_size(10);
    for compress in [false, true] {
        let label = if compress {
            "compressed"
        } else {
            "uncompressed"
        };
        group.bench_function(format!("dib-core {label}"), |b| {
            let options = Qcow2Options {
                compress,
                ..Qcow2Options::default()
            };
            b.iter(|| convert_raw(&raw, &out, &options).expect("convert"))
        });
        group.bench_function(format!("qemu-img convert {label}"), |b| {
            b.iter(|| {
                let mut command = Command::new("qemu-img");
                command.args(["convert", "-f", "raw", "-O", "qcow2"]);
                if compress {
                    command.arg("-c");
                }
                let status = command.arg(&raw).arg(&out).status().expect("qemu-img");
                assert!(status.success());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, elements, archives, qcow2);
criterion_main!(benches);
