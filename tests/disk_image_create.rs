//! `disk-image-create` end to end with the bundled offline elements (`host-minimal`, `demo`,
//! `block-device-mbr`/`-gpt`): as root and as an unprivileged user, to qcow2 + tar + raw.
//! Checked with real tools: `qemu-img check`/`compare`, `sfdisk`, `debugfs`, `tar`; two builds
//! with the same `SOURCE_DATE_EPOCH` bit-identical; SIGTERM and SIGINT in every phase leave no
//! temporary folder and no mount behind.

#![allow(clippy::print_stderr, reason = "tests report what they skip")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundled_elements() -> String {
    repo().join("elements").display().to_string()
}

/// A folder everybody may write to, removed at the end.
fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dib-test.")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

struct Build {
    elements: Vec<String>,
    extra_elements_path: Option<PathBuf>,
    output: PathBuf,
    tmp: PathBuf,
    types: &'static str,
    env: Vec<(String, String)>,
    /// Run as this uid/gid (unprivileged) instead of root.
    as_user: Option<u32>,
    args: Vec<String>,
}

impl Build {
    fn new(dir: &Path, elements: &[&str]) -> Self {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Build {
            elements: elements.iter().map(|e| (*e).to_owned()).collect(),
            extra_elements_path: None,
            output: dir.join("out/demo"),
            tmp,
            types: "qcow2,tar,raw",
            env: Vec::new(),
            as_user: None,
            args: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let exe = common::example("disk-image-create");
        let mut command = match self.as_user {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut path = bundled_elements();
        if let Some(extra) = &self.extra_elements_path {
            path = format!("{}:{path}", extra.display());
        }
        command
            .env_clear()
            .env("PATH", common::PATH)
            .env("HOME", self.tmp.parent().unwrap())
            .env("ELEMENTS_PATH", path)
            .env("TMP_DIR", &self.tmp)
            .env("DIB_IMAGE_CACHE", self.tmp.join("cache"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-o")
            .arg(&self.output)
            .arg("-t")
            .arg(self.types)
            .args(&self.args)
            .args(&self.elements);
        command
    }

    fn run(&self) -> Output {
        std::fs::create_dir_all(self.output.parent().unwrap()).unwrap();
        if let Some(uid) = self.as_user {
            chown_tree(self.output.parent().unwrap(), uid);
            chown_tree(&self.tmp, uid);
        }
        let output = self.command().output().unwrap();
        if !output.status.success() {
            eprintln!(
                "disk-image-create failed: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }

    fn path(&self, ext: &str) -> PathBuf {
        self.output.with_extension(ext)
    }
}

fn chown_tree(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Nothing of the build left in TMP_DIR.
fn assert_no_work_dirs(tmp: &Path) {
    let left: Vec<String> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dib_"))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        tmp.display()
    );
}

/// Loop devices backed by a file under `dir` (dib-core never makes one).
fn loops_under(dir: &Path) -> Vec<String> {
    let output = Command::new("losetup").arg("-a").output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

/// The last partition's byte offset (the root filesystem in the bundled layouts), from
/// sfdisk's JSON dump.
fn root_partition_offset(raw: &Path) -> u64 {
    let json = run_ok(Command::new("sfdisk").arg("--json").arg(raw));
    let start = json
        .split("\"start\":")
        .last()
        .and_then(|s| s.split([',', '}']).next())
        .map(str::trim)
        .and_then(|s| s.parse::<u64>().ok())
        .expect("a partition start in sfdisk's output");
    start * 512
}

fn debugfs_cat(raw: &Path, offset: u64, file: &str) -> String {
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {file}"))
            .arg(format!("{}?offset={offset}", raw.display())),
    )
}

fn check_outputs(build: &Build) {
    let (qcow2, raw, tar) = (build.path("qcow2"), build.path("raw"), build.path("tar"));
    run_ok(
        Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&qcow2),
    );
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );
    let info = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&qcow2),
    );
    assert!(info.contains("\"compression-type\": \"zlib\""), "{info}");

    // Every phase ran, on its side, in order.
    let phases = "extra-data host\npre-install chroot\ninstall chroot\npost-install chroot\n\
                  post-root host\nblock-device host\npre-finalise host\nfinalise chroot\ncleanup host\n";
    let listing = run_ok(Command::new("tar").arg("-tvf").arg(&tar));
    assert!(listing.contains("etc/dib-demo/phases"), "{listing}");
    assert!(!listing.lines().any(|l| l.contains(" proc/")), "{listing}");
    // No device node of the host's /dev found its way in.
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with('c') || l.starts_with('b')),
        "{listing}"
    );
    assert!(!listing.lines().any(|l| l.contains(" sys/")), "{listing}");
    let from_tar = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg("etc/dib-demo/phases"),
    );
    assert_eq!(from_tar, phases);
    let greeting = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg("etc/dib-demo/greeting"),
    );
    assert_eq!(greeting, "hello from dib-core\n");
    // Owned by root in the archive, also when built without root.
    let owners = run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tvf")
            .arg(&tar),
    );
    let line = owners
        .lines()
        .find(|l| l.ends_with("etc/dib-demo/phases"))
        .unwrap();
    assert!(line.contains(" 0/0 "), "{line}");

    // The same tree is in the disk image's root filesystem, with an fstab by label.
    let offset = root_partition_offset(&raw);
    assert_eq!(debugfs_cat(&raw, offset, "/etc/dib-demo/phases"), phases);
    let fstab = debugfs_cat(&raw, offset, "/etc/fstab");
    assert_eq!(fstab, "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
    run_ok(
        Command::new("e2fsck")
            .args(["-fn"])
            .arg(format!("{}?offset={offset}", raw.display())),
    );
}

#[test]
fn builds_qcow2_tar_and_raw_as_root() {
    if !common::is_root() {
        eprintln!("SKIP: needs root (the test command runs as root)");
        return;
    }
    let dir = shared_tempdir();
    let build = Build::new(dir.path(), &["host-minimal", "demo", "block-device-mbr"]);
    let output = build.run();
    assert!(output.status.success());
    check_outputs(&build);
    let timing = std::fs::read_to_string(build.path("timing.json")).unwrap();
    assert!(timing.contains("\"phase\": \"install\""), "{timing}");
    assert!(timing.contains("\"element\": \"demo\""), "{timing}");
    assert_no_work_dirs(&build.tmp);
}

#[test]
fn builds_without_root_in_a_user_namespace() {
    if !common::is_root() {
        eprintln!("SKIP: needs root to switch to an unprivileged user");
        return;
    }
    let dir = shared_tempdir();
    let mut build = Build::new(dir.path(), &["host-minimal", "demo", "block-device-gpt"]);
    build.as_user = Some(65534);
    let output = build.run();
    assert!(output.status.success());
    check_outputs(&build);
    assert_no_work_dirs(&build.tmp);
}

#[test]
fn same_source_date_epoch_gives_identical_images() {
    if !common::is_root() {
        eprintln!("SKIP: needs root (the test command runs as root)");
        return;
    }
    let dir = shared_tempdir();
    let mut digests = Vec::new();
    for round in 0..2 {
        let mut build = Build::new(
            &dir.path().join(format!("r{round}")),
            &["host-minimal", "demo", "block-device-mbr"],
        );
        build.output = dir.path().join(format!("out{round}/demo"));
        build
            .env
            .push(("SOURCE_DATE_EPOCH".into(), "1700000000".into()));
        assert!(build.run().status.success());
        let mut files = Vec::new();
        for ext in ["raw", "qcow2", "tar"] {
            files.push(std::fs::read(build.path(ext)).unwrap());
        }
        digests.push(files);
        // Builds a second apart must not differ by time.
        std::thread::sleep(Duration::from_millis(1100));
    }
    for (i, ext) in ["raw", "qcow2", "tar"].iter().enumerate() {
        assert!(
            digests[0][i] == digests[1][i],
            "{ext} differs between two builds"
        );
    }
}

#[test]
fn dry_run_prints_elements_hooks_and_block_device_order() {
    let dir = shared_tempdir();
    let mut build = Build::new(dir.path(), &["host-minimal", "demo", "block-device-mbr"]);
    build.args.push("--dry-run".into());
    let output = build.run();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("elements:\n  base "), "{text}");
    assert!(
        text.contains("  install.d:\n    50-demo-install (demo)\n"),
        "{text}"
    );
    assert!(text.contains("block-device:\n  image0\n"), "{text}");
    assert!(!build.output.parent().unwrap().join("demo.qcow2").exists());
    assert_no_work_dirs(&build.tmp);
}

#[test]
fn a_failing_hook_names_phase_and_element_and_cleans_up() {
    let dir = shared_tempdir();
    let extra = dir.path().join("elements/broken/install.d");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("10-fail"), "#!/bin/sh\nexit 3\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(extra.join("10-fail"))
        .status()
        .unwrap();
    let mut build = Build::new(dir.path(), &["host-minimal", "broken"]);
    build.extra_elements_path = Some(dir.path().join("elements"));
    if !common::is_root() {
        build.as_user = None;
    }
    let output = build.run();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("phase install.d in the chroot failed: 10-fail returned non-zero exit status 3 (element broken)"),
        "{stderr}"
    );
    assert_no_work_dirs(&build.tmp);
    assert!(mounts_under(dir.path()).is_empty());
}

/// SIGTERM or SIGINT while a hook of each phase runs: the build stops with an error, and no
/// temporary folder or mount is left.
#[test]
fn signals_in_every_phase_leave_nothing_behind() {
    if !common::is_root() {
        eprintln!("SKIP: needs root (the test command runs as root)");
        return;
    }
    let phases = [
        "root",
        "extra-data",
        "pre-install",
        "install",
        "post-install",
        "post-root",
        "block-device",
        "pre-finalise",
        "finalise",
        "cleanup",
    ];
    let dir = shared_tempdir();
    for (i, phase) in phases.iter().enumerate() {
        let case = dir.path().join(phase);
        let element = case.join("elements/sleepy");
        let hooks = element.join(format!("{phase}.d"));
        std::fs::create_dir_all(&hooks).unwrap();
        let marker = case.join("started");
        std::fs::create_dir_all(&case).unwrap();
        // Chroot hooks cannot reach the case folder: they touch a file in /dev/shm, which
        // is the host's through the chroot's bound /dev.
        let inside_marker = format!("/dev/shm/dib-test-{}-{phase}", std::process::id());
        let script = format!(
            "#!/bin/bash\ntouch {} 2>/dev/null || true\ntouch {inside_marker}\nsleep 60\n",
            marker.display()
        );
        std::fs::write(hooks.join("50-sleep"), script).unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(hooks.join("50-sleep"))
            .status()
            .unwrap();
        let mut build = Build::new(&case, &["host-minimal", "sleepy", "block-device-mbr"]);
        build.extra_elements_path = Some(case.join("elements"));
        std::fs::create_dir_all(build.output.parent().unwrap()).unwrap();
        let mut child = build.command().spawn().unwrap();
        let started = Instant::now();
        let host_marker = PathBuf::from(&inside_marker);
        while !marker.exists() && !host_marker.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{phase}.d never started"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("build ended before {phase}.d ran: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let signal = if i % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "{phase}: the build succeeded despite the signal"
        );
        let _ = std::fs::remove_file(&host_marker);
        assert_no_work_dirs(&build.tmp);
        assert!(mounts_under(&case).is_empty(), "{phase}: mounts left");
        assert!(loops_under(&case).is_empty(), "{phase}: loop devices left");
    }
}

/// package-installs files are squashed with the elements' environment, mapped by pkg-map and
/// installed in their phase by the image's package manager (here a recording apt-get the
/// element puts in the tree: host-minimal has no package manager; the debian-minimal test runs
/// the real one).
#[test]
fn package_installs_go_through_the_image_package_manager() {
    let dir = shared_tempdir();
    let element = dir.path().join("elements/pkgs");
    std::fs::create_dir_all(element.join("root.d")).unwrap();
    std::fs::create_dir_all(element.join("environment.d")).unwrap();
    std::fs::write(
        element.join("environment.d/90-distro.bash"),
        "export DISTRO_NAME=debian\n",
    )
    .unwrap();
    std::fs::write(
        element.join("root.d/20-recording-apt"),
        "#!/bin/bash\nset -eu\nmkdir -p \"$TARGET_ROOT/usr/bin\" \"$TARGET_ROOT/var/lib\"\n\
         printf '#!/bin/bash\\necho \"$*\" >> /var/lib/apt-calls\\n' > \"$TARGET_ROOT/usr/bin/apt-get\"\n\
         printf '[ \"$2\" != update ] || { mkdir -p /var/lib/apt/lists; : > /var/lib/apt/lists/x_Packages; }\\n' \
         >> \"$TARGET_ROOT/usr/bin/apt-get\"\n\
         chmod +x \"$TARGET_ROOT/usr/bin/apt-get\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(element.join("root.d/20-recording-apt"))
        .status()
        .unwrap();
    std::fs::write(
        element.join("package-installs.yaml"),
        "vim:\nwget:\n  phase: pre-install.d\ncompiler:\n  build-only: true\nnano:\n  arch: s390x\n",
    )
    .unwrap();
    std::fs::write(
        element.join("pkg-map"),
        r#"{"family": {"debian": {"vim": "vim-tiny"}}, "default": {"compiler": "gcc"}}"#,
    )
    .unwrap();
    let mut build = Build::new(dir.path(), &["host-minimal", "pkgs"]);
    build.extra_elements_path = Some(dir.path().join("elements"));
    build.types = "tar";
    build.args.push("-p".into());
    build.args.push("less,file".into());
    assert!(build.run().status.success());
    let calls = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(build.path("tar"))
            .arg("var/lib/apt-calls"),
    );
    assert_eq!(
        calls,
        "-y update\n\
         -y install --no-install-recommends wget\n\
         -y install --no-install-recommends vim-tiny gcc\n\
         -y purge gcc\n\
         -y install --no-install-recommends less file\n"
    );
}

/// `-t ramdisk,kernel`: the tree as a gzip'd cpio initramfs that cpio(1) unpacks into a root
/// one can chroot into, and the newest kernel with its initrd copied out of /boot.
#[test]
fn ramdisk_and_kernel_outputs() {
    let dir = shared_tempdir();
    let element = dir.path().join("elements/fake-kernel/root.d");
    std::fs::create_dir_all(&element).unwrap();
    std::fs::write(
        element.join("50-kernels"),
        "#!/bin/bash\nset -eu\nmkdir -p \"$TARGET_ROOT/boot\"\ncd \"$TARGET_ROOT/boot\"\n\
         echo k9 > vmlinuz-5.10.0-9\necho k10 > vmlinuz-5.10.0-10\necho i10 > initrd.img-5.10.0-10\n\
         echo i9 > initrd.img-5.10.0-9\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(element.join("50-kernels"))
        .status()
        .unwrap();
    let mut build = Build::new(dir.path(), &["host-minimal", "demo", "fake-kernel"]);
    build.extra_elements_path = Some(dir.path().join("elements"));
    build.types = "ramdisk,kernel";
    assert!(build.run().status.success());
    assert_eq!(
        std::fs::read_to_string(build.path("vmlinuz")).unwrap(),
        "k10\n"
    );
    assert_eq!(
        std::fs::read_to_string(build.path("initrd")).unwrap(),
        "i10\n"
    );
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let script = format!(
        "zcat {} | (cd {} && cpio -idm --quiet)",
        build.path("initramfs").display(),
        unpacked.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(script));
    assert_eq!(
        std::fs::read_to_string(unpacked.join("etc/dib-demo/greeting")).unwrap(),
        "hello from dib-core\n"
    );
    assert!(unpacked.join("proc").is_dir());
    if common::is_root() {
        let out =
            run_ok(
                Command::new("chroot")
                    .arg(&unpacked)
                    .args(["/bin/bash", "-c", "echo ok"]),
            );
        assert_eq!(out, "ok\n");
    }
}

/// The bundled debian-minimal element for real: mmdebstrap from Debian's mirror, then `-p`
/// installed by the image's own apt-get in the chroot (package lists fetched first, cleaned
/// in finalise).
#[test]
fn debian_minimal_with_a_package() {
    if !common::is_root() {
        eprintln!("SKIP: needs root (the test command runs as root)");
        return;
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("mmdebstrap is missing: scripts/test.sh installs it");
    }
    let dir = shared_tempdir();
    let mut build = Build::new(dir.path(), &["debian-minimal"]);
    build.types = "tar";
    build.args.extend(["-p".to_owned(), "less".to_owned()]);
    assert!(build.run().status.success());
    let tar = build.path("tar");
    let release = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg("usr/lib/os-release"),
    );
    assert!(release.contains("ID=debian"), "{release}");
    let status = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg("var/lib/dpkg/status"),
    );
    assert!(
        status.contains("Package: less\nStatus: install ok installed"),
        "less not installed"
    );
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with("var/lib/apt/lists/") && l.ends_with("_Packages")),
        "package lists left in the image"
    );
    assert_no_work_dirs(&build.tmp);
}

/// An EFI layout (GPT: vfat ESP at /boot/efi, BIOS boot, ext4 root) from
/// `DIB_BLOCK_DEVICE_CONFIG=file://…`: the ESP is made by mkfs.fat at its offset and filled
/// by mcopy, the root filesystem holds /boot/efi only as an empty folder, fstab has both by
/// label; `--checksum` files verify with md5sum/sha256sum, and the tgz lists the tree.
#[test]
fn efi_layout_checksums_and_tgz() {
    let dir = shared_tempdir();
    let element = dir.path().join("elements/efi-files/root.d");
    std::fs::create_dir_all(&element).unwrap();
    std::fs::write(
        element.join("50-efi"),
        "#!/bin/bash\nset -eu\nmkdir -p \"$TARGET_ROOT/boot/efi/EFI/BOOT\"\n\
         echo not-really-grub > \"$TARGET_ROOT/boot/efi/EFI/BOOT/BOOTX64.EFI\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(element.join("50-efi"))
        .status()
        .unwrap();
    let config = dir.path().join("efi.yaml");
    std::fs::write(&config, dib_core::blockdev::layouts::EFI).unwrap();
    let mut build = Build::new(dir.path(), &["host-minimal", "demo", "efi-files"]);
    build.extra_elements_path = Some(dir.path().join("elements"));
    build.types = "raw,tgz";
    build.env.push((
        "DIB_BLOCK_DEVICE_CONFIG".into(),
        format!("file://{}", config.display()),
    ));
    build
        .args
        .extend(["--image-size".into(), "1".into(), "--checksum".into()]);
    assert!(build.run().status.success());
    let raw = build.path("raw");

    let json = run_ok(Command::new("sfdisk").arg("--json").arg(&raw));
    let starts: Vec<u64> = json
        .split("\"start\":")
        .skip(1)
        .map(|s| s.split([',', '}']).next().unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 3, "{json}");
    let esp = starts[0] * 512;
    let efi_file = run_ok(
        Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{esp}", raw.display()))
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    );
    assert_eq!(efi_file, "not-really-grub\n");
    let label = run_ok(
        Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL", "-p", "-O"])
            .arg(esp.to_string())
            .arg(&raw),
    );
    assert_eq!(label.trim(), "MKFS_ESP");

    let root = starts[2] * 512;
    assert_eq!(
        debugfs_cat(&raw, root, "/etc/fstab"),
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=MKFS_ESP /boot/efi vfat defaults 0 2\n"
    );
    let efi_dir = run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg("ls -p /boot/efi")
            .arg(format!("{}?offset={root}", raw.display())),
    );
    assert!(
        !efi_dir.contains("EFI"),
        "/boot/efi of the root filesystem is not empty: {efi_dir}"
    );
    // The tree itself was put back after the root filesystem was made.
    let listing = run_ok(Command::new("tar").arg("-tzf").arg(build.path("tgz")));
    assert!(
        listing.contains("boot/efi/EFI/BOOT/BOOTX64.EFI"),
        "{listing}"
    );

    let out = build.output.parent().unwrap();
    for (tool, ext) in [("md5sum", "md5"), ("sha256sum", "sha256")] {
        for output in ["raw", "tgz"] {
            run_ok(
                Command::new(tool)
                    .arg("-c")
                    .arg(format!("demo.{output}.{ext}"))
                    .current_dir(out),
            );
        }
    }
}

/// Not enough room in TMP_DIR (a 20 MiB tmpfs in a private mount namespace): one clear error
/// naming the folder and the sizes, before any hook runs, and nothing left there.
#[test]
fn preflight_space_check_names_folder_and_sizes() {
    if !common::is_root() {
        eprintln!("SKIP: needs root to mount a small tmpfs in a private namespace");
        return;
    }
    let dir = shared_tempdir();
    let build = Build::new(dir.path(), &["host-minimal", "demo"]);
    std::fs::create_dir_all(build.output.parent().unwrap()).unwrap();
    let inner = build.command();
    let mut script = format!(
        "mount -t tmpfs -o size=20m tmpfs {} && exec",
        build.tmp.display()
    );
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            script.push_str(&format!(
                " {}='{}'",
                k.to_string_lossy(),
                v.to_string_lossy()
            ));
        }
    }
    script.push_str(&format!(" {}", inner.get_program().to_string_lossy()));
    for arg in inner.get_args() {
        script.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(script.replacen("&& exec", "&& exec env -i", 1))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!(
        "not enough space in {}: need 64 MiB, have ",
        build.tmp.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains(" MiB (build folder)"), "{stderr}");
    assert!(!stderr.contains("root.d"), "a hook ran: {stderr}");
}

/// `break=` points open `break_cmd` on the host at the named points (here each leaves a
/// marker with the phase's view of the tree), and the build then goes on.
#[test]
fn break_points_run_break_cmd_and_continue() {
    let dir = shared_tempdir();
    let mut build = Build::new(dir.path(), &["host-minimal", "demo"]);
    build.types = "tar";
    let log = dir.path().join("breaks.log");
    build.env.push((
        "break".into(),
        "before-root, after-post-root,after-cleanup".into(),
    ));
    build.env.push((
        "break_cmd".into(),
        format!("ls \"$TMP_MOUNT_PATH\" | wc -l >> {}", log.display()),
    ));
    assert!(build.run().status.success());
    let counts: Vec<u32> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert_eq!(counts[0], 0, "before-root sees an empty tree");
    assert!(counts[1] > 5 && counts[2] == counts[1], "{counts:?}");
}

/// `--logfile`: nothing on the terminal, the build's lines, hooks' output (labelled) and the
/// timing table in the file.
#[test]
fn logfile_takes_everything_and_the_terminal_stays_quiet() {
    let dir = shared_tempdir();
    let element = dir.path().join("elements/chatty/install.d");
    std::fs::create_dir_all(&element).unwrap();
    std::fs::write(
        element.join("10-talk"),
        "#!/bin/bash\necho installing things\necho oops >&2\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(element.join("10-talk"))
        .status()
        .unwrap();
    let mut build = Build::new(dir.path(), &["host-minimal", "chatty"]);
    build.extra_elements_path = Some(dir.path().join("elements"));
    build.types = "tar";
    let log = dir.path().join("build.log");
    build
        .args
        .extend(["--logfile".to_owned(), log.display().to_string()]);
    let output = build.run();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("install.d/10-talk (chatty)"), "{text}");
    assert!(text.contains("10-talk: installing things"), "{text}");
    assert!(text.contains("10-talk: oops"), "{text}");
    assert!(text.contains("phase          element"), "{text}");
    assert!(
        text.contains("[INFO] Build completed successfully"),
        "{text}"
    );
}

/// The bundled block-device-efi element: its layout is found in the element, and the image
/// is sized with the 525 MiB upstream adds for an EFI layout.
#[test]
fn block_device_efi_element_sizes_for_the_esp() {
    let dir = shared_tempdir();
    let mut build = Build::new(dir.path(), &["host-minimal", "block-device-efi"]);
    build.types = "raw";
    assert!(build.run().status.success());
    let raw = build.path("raw");
    assert!(std::fs::metadata(&raw).unwrap().len() > (525 + 64) << 20);
    let json = run_ok(Command::new("sfdisk").arg("--json").arg(&raw));
    assert_eq!(json.matches("\"start\":").count(), 3, "{json}");
    assert!(
        json.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{json}"
    );
}
