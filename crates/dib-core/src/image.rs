//! The image stage: sizing, rootless disk assembly (partition table in Rust, filesystems by
//! `mke2fs -d` and `mkfs.fat --offset` straight into the image file, no loop device, no
//! mount), tar/tgz archives, conversions and checksums.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::build::{BuildOptions, OutputType};
use crate::elements::Element;
use crate::Error;

/// Visits every entry below `dir` (not `dir` itself) in byte order of names, parents first,
/// without following symlinks or leaving the file system.
pub(crate) fn walk_sorted(
    dir: &Path,
    device: u64,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, &e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, &err)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, &e))?;
        visit(&path, &meta)?;
        if meta.is_dir() && meta.dev() == device {
            walk_sorted(&path, device, visit)?;
        }
    }
    Ok(())
}

fn root_device(root: &Path) -> Result<u64, Error> {
    Ok(std::fs::symlink_metadata(root)
        .map_err(|e| Error::io(root, &e))?
        .dev())
}

/// `du -a -c -x` of the tree in KiB: allocated blocks, hard links counted once.
pub fn du_kib(root: &Path) -> Result<u64, Error> {
    let device = root_device(root)?;
    let mut seen = HashSet::new();
    let mut blocks = std::fs::symlink_metadata(root)
        .map_err(|e| Error::io(root, &e))?
        .blocks();
    walk_sorted(root, device, &mut |_, meta| {
        if meta.nlink() <= 1 || seen.insert((meta.dev(), meta.ino())) {
            blocks += meta.blocks();
        }
        Ok(())
    })?;
    Ok(blocks / 2)
}

/// The bytes of file content in the tree (for the space check before the image stage).
pub fn tree_bytes(root: &Path) -> Result<u64, Error> {
    let device = root_device(root)?;
    let mut total = 0;
    walk_sorted(root, device, &mut |_, meta| {
        total += meta.len();
        Ok(())
    })?;
    Ok(total)
}

/// The image size in bytes, as upstream computes it (§5.5 of the spec): explicit, or the
/// tree's usage plus the extra size (or divided by 0.6), plus the ext4 journal, plus 525 MiB
/// for an EFI layout, rounded up to 64 KiB.
pub fn image_size(
    options: &BuildOptions,
    root: &Path,
    elements: &[&Element],
) -> Result<u64, Error> {
    let mut kib = match options.image_size {
        Some(bytes) => bytes / 1024,
        None => {
            let used = du_kib(root)?;
            match options.image_extra_size {
                Some(extra) => used + extra / 1024,
                None => (used as f64 / 0.6) as u64,
            }
        }
    };
    if options.fs_type == "ext4" && options.image_size.is_none() {
        let journal = options.journal_size_mib * 1024;
        // mke2fs refuses a journal over half the filesystem; upstream's sizing then fails for
        // small trees. Grow such images instead (they are sparse).
        kib = (kib + journal).max(3 * journal);
    }
    if elements.iter().any(|e| e.name.contains("block-device-efi")) {
        kib += 525 * 1024;
    }
    Ok(kib.div_ceil(64) * 64 * 1024)
}

/// Sets every timestamp later than `epoch` to `epoch` (reproducible builds).
pub fn clamp_mtimes(root: &Path, epoch: i64) -> Result<(), Error> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let device = root_device(root)?;
    let stamp = TimeSpec::new(epoch, 0);
    let mut clamp = |path: &Path, meta: &std::fs::Metadata| -> Result<(), Error> {
        if meta.mtime() > epoch || meta.atime() > epoch {
            let mtime = if meta.mtime() > epoch {
                stamp
            } else {
                TimeSpec::new(meta.mtime(), meta.mtime_nsec())
            };
            utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &stamp,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Error::Io {
                path: path.to_owned(),
                message: e.desc().to_owned(),
            })?;
        }
        Ok(())
    };
    walk_sorted(root, device, &mut clamp)?;
    let meta = std::fs::symlink_metadata(root).map_err(|e| Error::io(root, &e))?;
    clamp(root, &meta)
}

/// A temporary file beside `output` (removed unless persisted) and a buffered writer to it.
fn staged_output(output: &Path) -> Result<(tempfile::NamedTempFile, BufWriter<File>), Error> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, &e))?;
    crate::build::use_default_mode(temp.as_file(), output)?;
    let file = temp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(output, &e))?;
    Ok((temp, BufWriter::with_capacity(1 << 20, file)))
}

/// Syncs the staged file and renames it to `output`.
fn persist_output(temp: tempfile::NamedTempFile, output: &Path) -> Result<(), Error> {
    temp.as_file()
        .sync_all()
        .map_err(|e| Error::io(output, &e))?;
    temp.persist(output)
        .map_err(|e| Error::io(output, &e.error))?;
    Ok(())
}

/// Writes the tree as a tar (or gzip'd tar) archive: entries `./…` in byte order, `/proc` and
/// `/sys` left out, numeric owners (`owner`, the uid/gid the tree was built as without root,
/// is written as 0), mtimes clamped to `epoch`, hard links as links, and a gzip header with
/// no name or time. The archive is written to a temporary file and renamed.
pub fn write_tar(
    root: &Path,
    output: &Path,
    gzip: bool,
    epoch: Option<i64>,
    owner: Option<(u32, u32)>,
) -> Result<(), Error> {
    let (temp, file) = staged_output(output)?;
    let sink: Box<dyn Write> = if gzip {
        Box::new(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(file, flate2::Compression::best()),
        )
    } else {
        Box::new(file)
    };
    let mut archive = tar::Builder::new(sink);
    archive.follow_symlinks(false);
    let device = root_device(root)?;
    let mut links: std::collections::HashMap<(u64, u64), PathBuf> = Default::default();
    let map_id = |id: u32, ours: Option<u32>| if Some(id) == ours { 0 } else { id };
    let root_meta = std::fs::symlink_metadata(root).map_err(|e| Error::io(root, &e))?;
    {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(root_meta.mode() & 0o7777);
        header.set_uid(u64::from(map_id(root_meta.uid(), owner.map(|o| o.0))));
        header.set_gid(u64::from(map_id(root_meta.gid(), owner.map(|o| o.1))));
        let mtime = epoch.map_or(root_meta.mtime(), |e| root_meta.mtime().min(e));
        header.set_mtime(mtime.max(0) as u64);
        header.set_size(0);
        archive
            .append_data(&mut header, "./", std::io::empty())
            .map_err(|e| Error::io(output, &e))?;
    }
    let mut append = |path: &Path, meta: &std::fs::Metadata| -> Result<(), Error> {
        let rel = path.strip_prefix(root).unwrap_or(path);
        if rel == Path::new("proc") || rel == Path::new("sys") {
            return Ok(());
        }
        if rel.starts_with("proc") || rel.starts_with("sys") {
            return Ok(());
        }
        let name = Path::new(".").join(rel);
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(map_id(meta.uid(), owner.map(|o| o.0))));
        header.set_gid(u64::from(map_id(meta.gid(), owner.map(|o| o.1))));
        let mtime = match epoch {
            Some(epoch) => meta.mtime().min(epoch),
            None => meta.mtime(),
        };
        header.set_mtime(mtime.max(0) as u64);
        let io = |e: std::io::Error| Error::io(path, &e);
        let kind = meta.file_type();
        if meta.nlink() > 1 && !kind.is_dir() {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                archive.append_link(&mut header, &name, first).map_err(io)?;
                return Ok(());
            }
            links.insert((meta.dev(), meta.ino()), name.clone());
        }
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            archive
                .append_data(&mut header, &name, std::io::empty())
                .map_err(io)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(io)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            archive
                .append_link(&mut header, &name, &target)
                .map_err(io)?;
        } else if kind.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let file = File::open(path).map_err(io)?;
            archive.append_data(&mut header, &name, file).map_err(io)?;
        } else if kind.is_char_device() || kind.is_block_device() {
            header.set_entry_type(if kind.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            header.set_size(0);
            let rdev = meta.rdev();
            header.set_device_major(libc::major(rdev)).map_err(io)?;
            header.set_device_minor(libc::minor(rdev)).map_err(io)?;
            archive
                .append_data(&mut header, &name, std::io::empty())
                .map_err(io)?;
        } else if kind.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_size(0);
            archive
                .append_data(&mut header, &name, std::io::empty())
                .map_err(io)?;
        }
        // Sockets are not archived, as tar does.
        Ok(())
    };
    walk_sorted(root, device, &mut append)?;
    let mut sink = archive.into_inner().map_err(|e| Error::io(output, &e))?;
    sink.flush().map_err(|e| Error::io(output, &e))?;
    drop(sink);
    persist_output(temp, output)
}

/// Writes the tree as a gzip'd cpio archive in the kernel's `newc` format: an initramfs.
/// Entries in byte order, `/proc` and `/sys` kept as empty folders (the kernel mounts on
/// them), numeric owners (`owner` written as 0), mtimes clamped to `epoch`, inode numbers
/// counted from 1, hard links stored as separate files; a gzip header with no name or time.
pub fn write_initramfs(
    root: &Path,
    output: &Path,
    epoch: Option<i64>,
    owner: Option<(u32, u32)>,
) -> Result<(), Error> {
    let (temp, file) = staged_output(output)?;
    let mut sink = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::new(6));
    let device = root_device(root)?;
    let mut ino = 0u32;
    let mut written = 0u64;
    let map_id = |id: u32, ours: Option<u32>| if Some(id) == ours { 0 } else { id };
    let mut entry = |name: &str, meta: &std::fs::Metadata, data: &[u8], sink: &mut dyn Write| {
        ino += 1;
        let mtime = epoch.map_or(meta.mtime(), |e| meta.mtime().min(e)).max(0) as u32;
        let rdev = meta.rdev();
        let fields = [
            ino,
            meta.mode(),
            map_id(meta.uid(), owner.map(|o| o.0)),
            map_id(meta.gid(), owner.map(|o| o.1)),
            if meta.is_dir() { 2 } else { 1 },
            mtime,
            data.len() as u32,
            0,
            0,
            libc::major(rdev),
            libc::minor(rdev),
            (name.len() + 1) as u32,
            0,
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        let mut block = header.into_bytes();
        block.extend_from_slice(name.as_bytes());
        block.push(0);
        while block.len() % 4 != 0 {
            block.push(0);
        }
        block.extend_from_slice(data);
        while block.len() % 4 != 0 {
            block.push(0);
        }
        written += block.len() as u64;
        sink.write_all(&block)
    };
    let root_meta = std::fs::symlink_metadata(root).map_err(|e| Error::io(root, &e))?;
    entry(".", &root_meta, &[], &mut sink).map_err(|e| Error::io(output, &e))?;
    walk_sorted(root, device, &mut |path, meta| {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let inside_virtual = rel.starts_with("proc") || rel.starts_with("sys");
        if inside_virtual && rel != Path::new("proc") && rel != Path::new("sys") {
            return Ok(());
        }
        let name = rel.to_string_lossy();
        let kind = meta.file_type();
        let data = if kind.is_file() {
            std::fs::read(path).map_err(|e| Error::io(path, &e))?
        } else if kind.is_symlink() {
            use std::os::unix::ffi::OsStrExt;
            std::fs::read_link(path)
                .map_err(|e| Error::io(path, &e))?
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else if kind.is_socket() {
            return Ok(());
        } else {
            Vec::new()
        };
        entry(&name, meta, &data, &mut sink).map_err(|e| Error::io(path, &e))
    })?;
    let mut block = String::from("070701");
    for field in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0] {
        block.push_str(&format!("{field:08X}"));
    }
    let mut block = block.into_bytes();
    block.extend_from_slice(b"TRAILER!!!\0");
    while (written + block.len() as u64) % 4 != 0 {
        block.push(0);
    }
    // Pad the archive to 512 bytes, as cpio(1) does.
    while (written + block.len() as u64) % 512 != 0 {
        block.push(0);
    }
    sink.write_all(&block).map_err(|e| Error::io(output, &e))?;
    let mut file = sink.finish().map_err(|e| Error::io(output, &e))?;
    file.flush().map_err(|e| Error::io(output, &e))?;
    drop(file);
    persist_output(temp, output)
}

/// The newest kernel and its initrd in the tree's `/boot` (`vmlinuz-<version>`,
/// `initrd.img-<version>` or `initramfs-<version>.img`), copied out next to the outputs as
/// `NAME.vmlinuz` and `NAME.initrd`, as upstream's baremetal element extracts them.
pub fn extract_kernel(root: &Path, base: &Path) -> Result<Vec<PathBuf>, Error> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = std::fs::read_dir(&boot)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with("vmlinuz-") || n.starts_with("vmlinux-"))
                .collect()
        })
        .unwrap_or_default();
    kernels.sort_by(|a, b| version_order(&a[8..], &b[8..]));
    let Some(kernel) = kernels.last() else {
        return Err(Error::Build(format!(
            "no kernel in {} (vmlinuz-<version>): the image has nothing to boot from a ramdisk",
            boot.display()
        )));
    };
    let version = &kernel[8..];
    let initrd = [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
        format!("initrd-{version}"),
    ]
    .into_iter()
    .map(|n| boot.join(n))
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Error::Build(format!(
            "no initrd for kernel {kernel} in {} (initrd.img-{version} or initramfs-{version}.img)",
            boot.display()
        ))
    })?;
    let mut written = Vec::new();
    for (from, ext) in [(boot.join(kernel), "vmlinuz"), (initrd, "initrd")] {
        let to = base.with_extension(ext);
        let data = std::fs::read(&from).map_err(|e| Error::io(&from, &e))?;
        crate::build::write_atomically(&to, &data)?;
        written.push(to);
    }
    Ok(written)
}

/// Orders kernel versions as dpkg roughly does: numeric runs by value, the rest bytewise.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(bool, String)> {
        let mut parts: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match parts.last_mut() {
                Some((d, part)) if *d == digit => part.push(c),
                _ => parts.push((digit, c.to_string())),
            }
        }
        parts
    };
    let (a, b) = (split(a), split(b));
    for (x, y) in a.iter().zip(&b) {
        let ordering = match (x.0, y.0) {
            (true, true) => {
                x.1.parse::<u64>()
                    .unwrap_or(0)
                    .cmp(&y.1.parse::<u64>().unwrap_or(0))
            }
            _ => x.1.cmp(&y.1),
        };
        if ordering.is_ne() {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

/// Produces one disk output from the raw image: qcow2 in Rust, other formats through
/// `qemu-img convert`, raw by moving (or copying across file systems) the file itself.
pub fn convert(
    raw: &Path,
    output: &Path,
    kind: &OutputType,
    options: &BuildOptions,
) -> Result<(), Error> {
    match kind {
        OutputType::Raw => match std::fs::rename(raw, output) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_sparse(raw, output),
            Err(e) => Err(Error::io(output, &e)),
        },
        OutputType::Qcow2 => {
            let settings = crate::qcow2::Qcow2Options {
                compress: !options.uncompressed,
                ..Default::default()
            };
            crate::qcow2::convert_raw(raw, output, &settings).map(|_| ())
        }
        OutputType::QemuImg(format) => {
            let temp = output.with_extension(format!("{format}-new"));
            let mut command = std::process::Command::new("qemu-img");
            command.args(["convert", "-f", "raw", "-O", format]);
            if let Some(opts) = options.env.get("DIB_QEMU_IMG_OPTIONS") {
                command.arg("-o").arg(opts);
            }
            command.arg(raw).arg(&temp);
            run_tool(&mut command, "qemu-img convert")?;
            std::fs::rename(&temp, output).map_err(|e| Error::io(output, &e))
        }
        OutputType::Tar | OutputType::Tgz | OutputType::Ramdisk | OutputType::Kernel => {
            Err(Error::Build(format!(
                "{} is written from the tree, not the disk",
                output.display()
            )))
        }
    }
}

/// Copies a file, leaving holes where the source has them.
fn copy_sparse(from: &Path, to: &Path) -> Result<(), Error> {
    use std::io::{Seek, SeekFrom};
    let mut src = File::open(from).map_err(|e| Error::io(from, &e))?;
    let len = src.metadata().map_err(|e| Error::io(from, &e))?.len();
    let temp = to.with_extension("raw-new");
    let mut dst = File::create(&temp).map_err(|e| Error::io(&temp, &e))?;
    dst.set_len(len).map_err(|e| Error::io(&temp, &e))?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < len {
        let n = src.read(&mut buffer).map_err(|e| Error::io(from, &e))?;
        if n == 0 {
            break;
        }
        if buffer[..n].iter().any(|b| *b != 0) {
            dst.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io(&temp, &e))?;
            dst.write_all(&buffer[..n])
                .map_err(|e| Error::io(&temp, &e))?;
        }
        offset += n as u64;
    }
    dst.sync_all().map_err(|e| Error::io(&temp, &e))?;
    std::fs::rename(&temp, to).map_err(|e| Error::io(to, &e))?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// Writes `OUTPUT.md5` and `OUTPUT.sha256` in the format of md5sum/sha256sum.
pub fn write_checksums(output: &Path) -> Result<Vec<PathBuf>, Error> {
    use md5::Digest as _;
    let mut file = File::open(output).map_err(|e| Error::io(output, &e))?;
    let mut md5 = md5::Md5::new();
    let mut sha = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(output, &e))?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
        sha.update(&buffer[..n]);
    }
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut written = Vec::new();
    for (ext, digest) in [
        ("md5", hex(&md5.finalize())),
        ("sha256", hex(&sha.finalize())),
    ] {
        let path = PathBuf::from(format!("{}.{ext}", output.display()));
        crate::build::write_atomically(&path, format!("{digest}  {name}\n").as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Local time as `YYYY.mm.dd-HH.MM.SS`, for outputs set aside.
pub fn timestamp_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes only into the struct we pass.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!(
        "{:04}.{:02}.{:02}-{:02}.{:02}.{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Runs a tool to completion; a failure names the tool and carries its stderr's last line.
pub(crate) fn run_tool(command: &mut std::process::Command, what: &str) -> Result<(), Error> {
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            Error::Build(format!(
                "{what}: cannot run {:?}: {e}",
                command.get_program()
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Build(format!(
            "{what} failed ({}): {}",
            output.status,
            last.trim()
        )));
    }
    Ok(())
}

/// The build's block-device configuration, loaded and ordered.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub graph: crate::blockdev::Graph,
    /// Where the YAML came from (`DIB_BLOCK_DEVICE_CONFIG`, an element's file, the fallback).
    pub source: String,
}

impl DiskConfig {
    pub fn root_label(&self) -> String {
        self.graph
            .root_label()
            .unwrap_or("cloudimg-rootfs")
            .to_owned()
    }

    pub fn root_fstype(&self) -> String {
        self.graph.root_fstype().unwrap_or("ext4").to_owned()
    }

    pub fn boot_label(&self) -> String {
        self.graph.boot_label().to_owned()
    }

    pub fn mount_points(&self) -> Vec<String> {
        self.graph
            .mount_points()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

/// Finds and loads the block-device configuration as upstream does: `DIB_BLOCK_DEVICE_CONFIG`
/// (`file://PATH` or the YAML itself), else the first element shipping
/// `block-device-<ARCH>.yaml`, else the first shipping `block-device-default.yaml`, else one
/// filesystem filling the bare image.
pub fn block_device_config(
    options: &BuildOptions,
    elements: &[&Element],
) -> Result<DiskConfig, Error> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| Error::io(path, &e));
    let (yaml, source) = match options.block_device_config.as_deref() {
        Some(value) if value.starts_with("file://") => {
            let path = Path::new(&value["file://".len()..]);
            (read(path)?, path.display().to_string())
        }
        Some(value) if !value.trim().is_empty() => {
            (value.to_owned(), "DIB_BLOCK_DEVICE_CONFIG".to_owned())
        }
        _ => {
            let arch = match options.arch().as_str() {
                "ppc64le" => "ppc64el".to_owned(),
                other => other.to_owned(),
            };
            let find = |file: &str| {
                elements
                    .iter()
                    .map(|e| e.path.join(file))
                    .find(|p| p.is_file())
            };
            match find(&format!("block-device-{arch}.yaml"))
                .or_else(|| find("block-device-default.yaml"))
            {
                Some(path) => (read(&path)?, path.display().to_string()),
                None => (
                    crate::blockdev::layouts::FALLBACK.to_owned(),
                    "the default layout".to_owned(),
                ),
            }
        }
    };
    let mut root_opts = Vec::new();
    if options.fs_type == "ext4" {
        root_opts.push(format!("-i 4096 -J size={}", options.journal_size_mib));
    }
    if let Some(extra) = &options.mkfs_options {
        root_opts.push(extra.clone());
    }
    let params = crate::blockdev::Params {
        root_fs_type: options.fs_type.clone(),
        root_fs_opts: (!root_opts.is_empty()).then(|| root_opts.join(" ")),
        root_label: options.root_label.clone(),
        block_size: options
            .env
            .get("DIB_BLOCK_SIZE")
            .and_then(|v| v.parse().ok()),
    };
    let graph = crate::blockdev::Graph::load(&yaml, &params)
        .map_err(|e| Error::BlockDevice(format!("{source}: {e}")))?;
    Ok(DiskConfig { graph, source })
}

/// What the disk assembly needs.
#[derive(Debug)]
pub struct DiskRequest<'a> {
    pub config: &'a DiskConfig,
    pub options: &'a BuildOptions,
    pub tree: &'a Path,
    pub raw: &'a Path,
    /// The image size in bytes.
    pub size: u64,
    pub privilege: crate::sandbox::Privilege,
}

/// Lays out the disk and makes every filesystem in the raw image file from the tree, with no
/// loop device and no mount: the partition table written in Rust, ext2/3/4 by
/// `mke2fs -d SUBTREE -E offset=…`, vfat by `mkfs.fat --offset` and `mcopy`, swap headers in
/// Rust. Filesystems that have no offline way to be filled (xfs, LVM) are refused.
pub fn assemble_disk(request: &DiskRequest<'_>) -> Result<crate::blockdev::DiskPlan, Error> {
    use crate::blockdev::{PartitionTable, RandomIds};
    let options = request.options;
    let plan = match &options.source_date_epoch {
        Some(epoch) => {
            let seed = crate::reproducible::Seed {
                image_name: options.image_basename(),
                epoch: epoch.clone(),
            };
            request.config.graph.plan(request.size, &seed)?
        }
        None => request.config.graph.plan(request.size, &RandomIds::new())?,
    };
    let mut image = File::create(request.raw).map_err(|e| Error::io(request.raw, &e))?;
    image
        .set_len(plan.image_size)
        .map_err(|e| Error::io(request.raw, &e))?;
    match &plan.table {
        Some(PartitionTable::Mbr { layout, disk_id }) => layout.write(&mut image, *disk_id),
        Some(PartitionTable::Gpt(layout)) => layout.write(&mut image),
        None => Ok(()),
    }
    .map_err(|e| Error::io(request.raw, &e))?;
    image.sync_all().map_err(|e| Error::io(request.raw, &e))?;
    drop(image);
    let sandbox = match request.privilege {
        crate::sandbox::Privilege::Root => None,
        privilege => Some(std::sync::Arc::new(
            crate::sandbox::Sandbox::namespace_only(privilege),
        )),
    };
    for fs in &plan.filesystems {
        let subtree = fs
            .mount_point
            .as_deref()
            .map(|mp| request.tree.join(mp.trim_start_matches('/')));
        if let Some(dir) = &subtree {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        }
        let _aside = SetAside::new(request.tree, &fs.exclude)?;
        match fs.fs_type.as_str() {
            "ext2" | "ext3" | "ext4" => {
                let mut command = std::process::Command::new("mke2fs");
                command
                    .arg("-t")
                    .arg(&fs.fs_type)
                    .args(["-F", "-q"])
                    .arg("-L")
                    .arg(&fs.label)
                    .arg("-U")
                    .arg(fs.id.to_string());
                let mut extended = format!("offset={}", fs.offset);
                if let Some(seed) = &fs.hash_seed {
                    extended.push_str(&format!(",hash_seed={seed}"));
                }
                command.arg("-E").arg(extended);
                for opt in &fs.opts {
                    command.args(opt.split_whitespace());
                }
                if let Some(dir) = &subtree {
                    command.arg("-d").arg(dir);
                }
                if let Some(epoch) = &options.source_date_epoch {
                    command.env("E2FSPROGS_FAKE_TIME", epoch);
                }
                command.arg(request.raw).arg(format!("{}k", fs.size / 1024));
                if let Some(sandbox) = &sandbox {
                    sandbox.apply(&mut command);
                }
                run_tool(&mut command, &format!("mke2fs for {}", fs.name))?;
                if let (Some(epoch), Some(dir)) = (&options.source_date_epoch, &subtree) {
                    settle_inode_times(request.raw, fs.offset, dir, epoch)?;
                }
            }
            "vfat" => {
                let mut command = std::process::Command::new("mkfs.fat");
                command
                    .arg(format!("--offset={}", fs.offset / 512))
                    .arg("-n")
                    .arg(&fs.label);
                if let crate::blockdev::FsId::VolumeId(id) = fs.id {
                    command.arg("-i").arg(format!("{id:08X}"));
                }
                for opt in &fs.opts {
                    command.args(opt.split_whitespace());
                }
                if let Some(epoch) = &options.source_date_epoch {
                    command.env("SOURCE_DATE_EPOCH", epoch);
                }
                command.arg(request.raw).arg((fs.size / 1024).to_string());
                run_tool(&mut command, &format!("mkfs.fat for {}", fs.name))?;
                if let Some(dir) = &subtree {
                    copy_into_fat(request.raw, fs.offset, dir)?;
                }
            }
            "swap" => write_swap_header(request.raw, fs)?,
            other => {
                return Err(Error::Build(format!(
                    "filesystem {other} of {}: dib-core fills ext2/3/4, vfat and swap without mounting; {other} needs the privileged path, which is not implemented",
                    fs.name
                )));
            }
        }
    }
    Ok(plan)
}

/// Sets atime, ctime and crtime of every inode `mke2fs -d` copied from `dir` to `epoch`.
///
/// mke2fs 1.47.0 copies them from the source files, where the kernel set ctime to the time
/// of the build (and reading them moved atime): two builds would differ there. mtimes are
/// already clamped in the tree. debugfs rewrites the inodes with their checksums.
fn settle_inode_times(image: &Path, offset: u64, dir: &Path, epoch: &str) -> Result<(), Error> {
    let device = root_device(dir)?;
    let mut script = String::new();
    let mut add = |path: &str| {
        for field in ["atime", "ctime", "crtime"] {
            script.push_str(&format!("sif \"{path}\" {field} @{epoch}\n"));
        }
    };
    add("/");
    let mut skipped = Vec::new();
    walk_sorted(dir, device, &mut |path, _| {
        let rel = path.strip_prefix(dir).unwrap_or(path).to_string_lossy();
        if rel.contains(['"', '\n', '\\']) {
            skipped.push(rel.into_owned());
        } else {
            add(&format!("/{rel}"));
        }
        Ok(())
    })?;
    let mut commands = tempfile::NamedTempFile::new().map_err(|e| Error::io(image, &e))?;
    commands
        .write_all(script.as_bytes())
        .map_err(|e| Error::io(commands.path(), &e))?;
    let mut command = std::process::Command::new("debugfs");
    command
        .env("E2FSPROGS_FAKE_TIME", epoch)
        .arg("-w")
        .arg("-f")
        .arg(commands.path())
        .arg(format!("{}?offset={offset}", image.display()));
    run_tool(&mut command, "debugfs (settling inode times)")?;
    if !skipped.is_empty() {
        return Err(Error::Build(format!(
            "SOURCE_DATE_EPOCH: cannot settle the times of {} (quote or backslash in the name)",
            skipped.join(", ")
        )));
    }
    Ok(())
}

/// Moves nested mount points' contents out of a filesystem's subtree for as long as it lives,
/// leaving empty folders to mount on; they come back on drop, also after an error.
struct SetAside {
    moved: Vec<(PathBuf, PathBuf)>,
}

impl SetAside {
    /// `exclude` holds absolute mount points, relative to the tree's root `tree`.
    fn new(tree: &Path, exclude: &[String]) -> Result<Self, Error> {
        let mut aside = SetAside { moved: Vec::new() };
        for (i, mount_point) in exclude.iter().enumerate() {
            let path = tree.join(mount_point.trim_start_matches('/'));
            if !path.exists() {
                std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, &e))?;
                continue;
            }
            let parked = tree.with_file_name(format!(
                ".{}.aside-{i}",
                tree.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::rename(&path, &parked).map_err(|e| Error::io(&path, &e))?;
            aside.moved.push((path.clone(), parked.clone()));
            std::fs::create_dir(&path).map_err(|e| Error::io(&path, &e))?;
            if let Ok(meta) = std::fs::metadata(&parked) {
                let _ = std::fs::set_permissions(&path, meta.permissions());
            }
        }
        Ok(aside)
    }
}

impl Drop for SetAside {
    fn drop(&mut self) {
        for (path, parked) in self.moved.drain(..).rev() {
            let _ = std::fs::remove_dir(&path);
            let _ = std::fs::rename(&parked, &path);
        }
    }
}

/// Copies a folder's contents into a FAT filesystem at `offset` in `image` with mtools.
fn copy_into_fat(image: &Path, offset: u64, dir: &Path) -> Result<(), Error> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, &e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let mut command = std::process::Command::new("mcopy");
    command
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-p", "-m", "-Q", "-i"])
        .arg(format!("{}@@{offset}", image.display()))
        .args(&entries)
        .arg("::/");
    run_tool(&mut command, "mcopy")
}

/// A Linux swap area header (version 1) at the filesystem's offset.
fn write_swap_header(image: &Path, fs: &crate::blockdev::FsPlan) -> Result<(), Error> {
    use std::io::{Seek, SeekFrom};
    const PAGE: u64 = 4096;
    let pages = fs.size / PAGE;
    if pages < 10 {
        return Err(Error::Build(format!(
            "swap {}: {} bytes is too small for a swap area",
            fs.name, fs.size
        )));
    }
    let mut page = vec![0u8; PAGE as usize];
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    page[1028..1032].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    if let crate::blockdev::FsId::Uuid(text) = &fs.id {
        if let Some(uuid) = crate::gpt::guid_bytes(text) {
            page[1036..1052].copy_from_slice(&uuid_text_order(text).unwrap_or(uuid));
        }
    }
    let label = fs.label.as_bytes();
    let n = label.len().min(15);
    page[1052..1052 + n].copy_from_slice(&label[..n]);
    page[PAGE as usize - 10..].copy_from_slice(b"SWAPSPACE2");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| Error::io(image, &e))?;
    file.seek(SeekFrom::Start(fs.offset))
        .and_then(|_| file.write_all(&page))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(image, &e))
}

/// A UUID's 16 bytes in text order (as the swap header and ext4 store them).
fn uuid_text_order(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
