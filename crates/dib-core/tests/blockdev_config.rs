//! Block-device configurations (`tests/fixtures/blockdev/<case>/`), written from the facts of
//! the reference (§4.2–§4.8): upstream's fixture names and results, in our own YAML.
//!
//! Each case holds `config.yaml` (or `layout`, naming one of [`layouts`]: `fallback`,
//! `block-device-mbr`, …), optionally `params` (`key: value` lines: `root-fs-type`,
//! `root-fs-opts`, `root-label`, `block-size`, and `image-size`, which also asks for a disk
//! plan), and what it expects:
//! * `expected.error`: the exact message of the first error (loading, then planning);
//! * `expected.graph`: [`Graph::describe`], the nodes in order with their settings and edges;
//! * `expected.fstab`: [`Graph::fstab`];
//! * `expected.getval`: `root-label`, `root-fstype`, `boot-label`, `mount-points`;
//! * `expected.plan`: [`DiskPlan::describe`] with identifiers from the seed below;
//! * `same_as`: a graph-form case that this config flattens to, compared as multisets with
//!   that case's config as written.

use std::collections::BTreeMap;
use std::path::Path;

use dib_core::blockdev::{
    layouts, Config, DiskPlan, FsId, Graph, IdSource, Node, Params, PartitionTable, RandomIds,
};
use dib_core::gpt::{GptLayout, GptPartitionSpec};
use dib_core::mbr::{Layout, PartitionSpec};
use dib_core::reproducible::{uuid_text, Purpose, Seed};
use dib_core::size::Size;

fn seed() -> Seed {
    Seed {
        image_name: "fixture".into(),
        epoch: "1700000000".into(),
    }
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn config_text(dir: &Path) -> String {
    if let Some(text) = read(dir, "config.yaml") {
        return text;
    }
    let layout = read(dir, "layout").expect("config.yaml or layout");
    match layout.trim() {
        "fallback" => layouts::FALLBACK.to_owned(),
        element => layouts::for_element(element)
            .unwrap_or_else(|| panic!("no layout {element}"))
            .to_owned(),
    }
}

/// Multiset comparison: the rendered entries, sorted.
fn sorted_lines(config: &Config) -> Vec<String> {
    let mut lines: Vec<String> = config.render().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn getval(graph: &Graph) -> String {
    [
        format!("root-label: {}", graph.root_label().unwrap_or("")),
        format!("root-fstype: {}", graph.root_fstype().unwrap_or("")),
        format!("boot-label: {}", graph.boot_label()),
        format!("mount-points: {}", graph.mount_points().join(" ")),
    ]
    .iter()
    .map(|l| format!("{}\n", l.trim_end()))
    .collect()
}

fn run_case(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let params_text = read(dir, "params").unwrap_or_default();
    let settings: BTreeMap<&str, &str> = params_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let mut params = Params::default();
    if let Some(t) = settings.get("root-fs-type") {
        params.root_fs_type = (*t).to_owned();
    }
    params.root_fs_opts = settings.get("root-fs-opts").map(|s| (*s).to_owned());
    params.root_label = settings.get("root-label").map(|s| (*s).to_owned());
    params.block_size = settings
        .get("block-size")
        .map(|s| s.parse().expect("block-size"));
    let image_size = settings.get("image-size").map(|s| {
        match dib_core::size::parse(s, false).expect("image-size") {
            Size::Bytes(b) => b,
            Size::Percent(_) => panic!("image-size"),
        }
    });

    let text = config_text(dir);
    let expected_error = read(dir, "expected.error");
    let mut error = None;

    if let Some(other) = read(dir, "same_as") {
        let other = dir.parent().expect("parent").join(other.trim());
        let written = Config::parse(&config_text(&other)).expect("graph form parses");
        match Config::parse(&text).and_then(|c| c.flatten()) {
            Ok(flat) if sorted_lines(&flat) == sorted_lines(&written) => {}
            Ok(flat) => problems.push(format!(
                "flattens to\n{}\nnot\n{}",
                sorted_lines(&flat).join("\n"),
                sorted_lines(&written).join("\n")
            )),
            Err(e) => problems.push(format!("flatten: {e}")),
        }
    }

    match Graph::load(&text, &params) {
        Err(e) => error = Some(e.to_string()),
        Ok(graph) => {
            let mut check = |file: &str, got: String| {
                if let Some(expected) = read(dir, file) {
                    if got != expected {
                        problems.push(format!("{file}: got\n{got}expected\n{expected}"));
                    }
                }
            };
            check("expected.graph", graph.describe());
            check("expected.fstab", graph.fstab());
            check("expected.getval", getval(&graph));
            if let Some(size) = image_size {
                match graph.plan(size, &seed()) {
                    Ok(plan) => {
                        check("expected.plan", plan.describe());
                        if plan.fstab != graph.fstab() {
                            problems.push("plan fstab differs".to_owned());
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
        }
    }
    match (&error, &expected_error) {
        (None, None) => {}
        (Some(got), Some(expected)) if got == expected.trim_end() => {}
        (got, expected) => problems.push(format!("error: got {got:?}, expected {expected:?}")),
    }
    let expects_something = [
        "expected.error",
        "expected.graph",
        "expected.fstab",
        "expected.getval",
        "expected.plan",
        "same_as",
    ]
    .iter()
    .any(|f| dir.join(f).exists());
    if !expects_something {
        problems.push("no expected file".to_owned());
    }
    problems
}

#[test]
fn fixture_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blockdev");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        for problem in run_case(case) {
            failures.push(format!(
                "{}: {problem}",
                case.file_name().expect("name").to_string_lossy()
            ));
        }
    }
    assert_eq!(cases.len(), 39, "fixture count");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn load(yaml: &str) -> Graph {
    Graph::load(yaml, &Params::default()).expect("loads")
}

fn plan(yaml: &str, size: u64) -> DiskPlan {
    load(yaml).plan(size, &seed()).expect("plans")
}

fn fixture(case: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/blockdev")
        .join(case)
        .join("config.yaml");
    std::fs::read_to_string(path).expect("fixture")
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[test]
fn flattening_names_nodes_as_upstream() {
    let tree = "
- local_loop:
    name: image0
    partitioning:
      label: mbr
      partitions:
        - name: root
          flags: [boot, primary]
          size: 100%
          mkfs:
            type: ext4
            mount: {mount_point: /, fstab: {options: defaults, fsck-passno: 1}}
";
    let flat = Config::parse(tree)
        .expect("parses")
        .flatten()
        .expect("flattens");
    let names: Vec<(&str, Option<&str>)> = flat
        .entries
        .iter()
        .map(|e| (e.name().expect("named"), e.base()))
        .collect();
    // Children come before their parents.
    assert_eq!(
        names,
        [
            ("fstab_mount_mkfs_root", Some("mount_mkfs_root")),
            ("mount_mkfs_root", Some("mkfs_root")),
            ("mkfs_root", Some("root")),
            ("partitioning_image0", Some("image0")),
            ("image0", None),
        ]
    );
    let partitions = flat.entries[3].get("partitions").expect("partitions");
    assert_eq!(
        partitions.py_repr(),
        "[{'name': 'root', 'flags': ['boot', 'primary'], 'size': '100%', 'base': 'image0'}]"
    );
    // A top-level entry with neither name nor base cannot be named.
    let error = Config::parse("- mkfs: {type: ext4}")
        .expect("parses")
        .flatten()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1: mkfs config needs 'name' or 'base'"
    );
    let error = Config::parse("- lvm: {pvs: []}")
        .expect("parses")
        .flatten()
        .unwrap_err();
    assert_eq!(error.to_string(), "Lvm config requires 'name'");
}

#[test]
fn dib_core_errors_name_lines() {
    let error = Graph::load(
        "- local_loop: {name: image0}\n- partitioning:\n    base: image0\n    label: mbr\n    partitions: root\n",
        &Params::default(),
    )
    .unwrap_err();
    assert_eq!(error.to_string(), "line 5: 'partitions' must be a list");
    let error = Graph::load("local_loop: {name: image0}\n", &Params::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1: a block-device config must be a list of single-key dicts"
    );
    let error = Graph::load(
        "- local_loop: {name: image0}\n- mkfs:\n    base: image0\n    name: [a, b]\n",
        &Params::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 4: 'name' must be a single value, not ['a', 'b']"
    );
    // Upstream's texts print values as Python does.
    let error = Graph::load("- 42\n", &Params::default()).unwrap_err();
    assert_eq!(error.to_string(), "Config entry not a dict: 42");
    let error = Graph::load("- [a, 0x10, yes, ~, '7']\n", &Params::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Config entry not a dict: ['a', 16, True, None, '7']"
    );
    assert!(Graph::load("", &Params::default())
        .expect("empty is empty")
        .nodes()
        .is_empty());
}

#[test]
fn deep_graph_order_is_exact() {
    let graph = load(&fixture("deep_graph"));
    assert_eq!(
        graph.order(),
        [
            "image0",
            "root",
            "mkfs_root",
            "mount_mkfs_root",
            "fstab_mount_mkfs_root"
        ]
    );
}

#[test]
fn multiple_partitions_order_constraints() {
    let graph = load(&fixture("multiple_partitions_tree"));
    let order = graph.order();
    let at = |name: &str| order.iter().position(|n| *n == name).expect(name);
    assert!(at("root") < at("var") && at("var") < at("var_log") && at("var_log") < at("swap"));
    for partition in ["root", "var", "var_log", "swap"] {
        assert!(
            at(partition) < at(&format!("mkfs_{partition}")),
            "{partition}"
        );
    }
    assert_eq!(graph.mount_points(), ["/", "/var", "/var/log", "none"]);
    // Every edge points forwards.
    for (from, to) in graph.edges() {
        assert!(at(from) < at(to), "{from}->{to}");
    }
}

#[test]
fn lvm_sizes_are_floored_to_extents() {
    let graph = load(&fixture("lvm_tree"));
    let size = |name: &str| match graph.node(name) {
        Some(Node::Lv(lv)) => lv.size.expect("size"),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(size("lv_root"), 1_799_356_416);
    assert_eq!(size("lv_tmp"), 96_468_992);
    assert_eq!(size("lv_var"), 499_122_176);
    assert_eq!(size("lv_home"), 197_132_288);
    assert_eq!(size("lv_data"), 1_996_488_704);
    assert_eq!(
        graph.plan(4 * GIB, &seed()).unwrap_err().to_string(),
        "lvm needs the privileged path, which dib-core does not implement yet"
    );
}

/// The MBR placement is `mbr::Layout::plan`'s, and filesystems sit on their partitions.
#[test]
fn mbr_plan_matches_the_mbr_layout() {
    let disk = plan(&fixture("mbr_logical_plan"), GIB);
    let expected = Layout::plan(
        GIB,
        &[
            PartitionSpec {
                name: "p1".into(),
                size: Size::Bytes(10 * MIB),
                primary: true,
                bootable: true,
                kind: 0x83,
            },
            PartitionSpec {
                name: "l1".into(),
                size: Size::Bytes(10 * MIB),
                primary: false,
                bootable: false,
                kind: 0x83,
            },
            PartitionSpec {
                name: "l2".into(),
                size: Size::Bytes(10 * MIB),
                primary: false,
                bootable: false,
                kind: 0x0c,
            },
        ],
    )
    .expect("plans");
    match &disk.table {
        Some(PartitionTable::Mbr { layout, disk_id }) => {
            assert_eq!(layout, &expected);
            assert_eq!(*disk_id, seed().id32(Purpose::MbrDiskId, "image0"));
        }
        other => panic!("{other:?}"),
    }
    for fs in &disk.filesystems {
        let partition = disk
            .partitions
            .iter()
            .find(|p| p.name == fs.device)
            .expect("on a partition");
        let entry = expected
            .entries
            .iter()
            .find(|e| e.number == partition.number)
            .expect("entry");
        assert_eq!(fs.offset, entry.start * 512);
        assert_eq!(fs.size, (entry.end - entry.start + 1) * 512);
    }
    let swap = &disk.filesystems[0];
    assert_eq!(
        (swap.fs_type.as_str(), swap.mount_point.as_deref()),
        ("swap", None)
    );
    assert_eq!(
        swap.id,
        FsId::Uuid(uuid_text(&seed().uuid(Purpose::SwapUuid, "mkfs_l1")))
    );
    assert_eq!(swap.hash_seed, None);
}

/// The GPT placement is `gpt::GptLayout::plan`'s, with GUIDs in on-disk byte order.
#[test]
fn gpt_plan_matches_the_gpt_layout() {
    let ids = |purpose: Purpose, node: &str| -> [u8; 16] {
        let mut uuid = [0u8; 16];
        uuid[0] = purpose as u8;
        for (i, b) in node.bytes().take(15).enumerate() {
            uuid[i + 1] = b;
        }
        uuid
    };
    let disk = load(&fixture("gpt_efi")).plan(GIB, &ids).expect("plans");
    let on_disk = |purpose: Purpose, node: &str| -> [u8; 16] {
        dib_core::gpt::guid_bytes(&uuid_text(&ids(purpose, node))).expect("guid")
    };
    let spec = |name: &str, size, code: &str| GptPartitionSpec {
        name: name.into(),
        size,
        type_code: code.into(),
        guid: on_disk(Purpose::GptPartGuid, name),
    };
    let expected = GptLayout::plan(
        GIB,
        on_disk(Purpose::GptDiskGuid, "image0"),
        &[
            spec("ESP", Size::Bytes(8 * MIB), "EF00"),
            spec("BSP", Size::Bytes(8 * MIB), "EF02"),
            spec("Root Part", Size::Percent(100.0), "8300"),
        ],
    )
    .expect("plans");
    assert_eq!(disk.table, Some(PartitionTable::Gpt(expected)));
    let sizes: Vec<u64> = disk.partitions.iter().map(|p| p.size / MIB).collect();
    assert_eq!(sizes, [8, 8, 1006]);
    assert_eq!(
        disk.partitions[2].guid.as_deref(),
        Some(uuid_text(&ids(Purpose::GptPartGuid, "Root Part")).as_str())
    );
    let root = disk
        .filesystems
        .iter()
        .find(|f| f.name == "mkfs_root")
        .expect("root");
    assert_eq!(
        (root.offset, root.size),
        (disk.partitions[2].offset, disk.partitions[2].size)
    );
}

#[test]
fn subtrees_exclude_nested_mount_points() {
    let yaml = "
- local_loop:
    name: image0
    partitioning:
      label: gpt
      partitions:
        - {name: root, size: 40%, mkfs: {name: mkfs_root, mount: {mount_point: /}}}
        - {name: boot, size: 10%, mkfs: {type: ext4, mount: {mount_point: /boot}}}
        - {name: esp, size: 10%, mkfs: {type: vfat, mount: {mount_point: /boot/efi}}}
        - {name: log, size: 10%, mkfs: {type: ext4, mount: {mount_point: /var/log}}}
        - {name: varlib, size: 10%, mkfs: {type: ext4, mount: {mount_point: /var-lib}}}
        - {name: swap, size: 10%, mkfs: {type: swap, mount: {mount_point: none}}}
        - {name: spare, size: 10%, mkfs: {type: ext4}}
";
    let disk = plan(yaml, 4 * GIB);
    let subtree: BTreeMap<&str, (Option<&str>, Vec<&str>)> = disk
        .filesystems
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                (
                    f.mount_point.as_deref(),
                    f.exclude.iter().map(String::as_str).collect(),
                ),
            )
        })
        .collect();
    assert_eq!(
        subtree["mkfs_root"],
        (Some("/"), vec!["/boot", "/var-lib", "/var/log"])
    );
    assert_eq!(subtree["mkfs_boot"], (Some("/boot"), vec!["/boot/efi"]));
    assert_eq!(subtree["mkfs_esp"], (Some("/boot/efi"), vec![]));
    assert_eq!(subtree["mkfs_log"], (Some("/var/log"), vec![]));
    assert_eq!(subtree["mkfs_varlib"], (Some("/var-lib"), vec![]));
    assert_eq!(subtree["mkfs_swap"], (None, vec![]));
    assert_eq!(subtree["mkfs_spare"], (None, vec![]));
    let graph = load(yaml);
    assert_eq!(graph.boot_label(), "mkfs_boot");
    assert_eq!(
        graph.mount_points(),
        ["/", "/boot", "/boot/efi", "/var-lib", "/var/log", "none"]
    );
}

#[test]
fn identifiers_are_reproducible_with_a_seed() {
    let yaml = layouts::EFI;
    let a = plan(yaml, 2 * GIB);
    assert_eq!(a, plan(yaml, 2 * GIB), "same seed, same plan");
    let later = Seed {
        epoch: "1700000001".into(),
        ..seed()
    };
    let b = load(yaml).plan(2 * GIB, &later).expect("plans");
    assert_ne!(a.filesystems, b.filesystems);
    assert_ne!(a.table, b.table);
    // Placement does not depend on the identifiers.
    let ranges = |p: &DiskPlan| -> Vec<(u64, u64)> {
        p.filesystems.iter().map(|f| (f.offset, f.size)).collect()
    };
    assert_eq!(ranges(&a), ranges(&b));

    let root = a
        .filesystems
        .iter()
        .find(|f| f.name == "mkfs_root")
        .expect("root");
    assert_eq!(
        root.id,
        FsId::Uuid(uuid_text(&seed().uuid(Purpose::FsUuid, "mkfs_root")))
    );
    assert_eq!(
        root.hash_seed,
        Some(uuid_text(&seed().uuid(Purpose::Ext4HashSeed, "mkfs_root")))
    );
    let esp = &a.filesystems[0];
    assert_eq!(
        esp.id,
        FsId::VolumeId(seed().id32(Purpose::VfatVolumeId, "mkfs_ESP"))
    );

    // Without a seed: random, but consistent within one source.
    let random = RandomIds::new();
    let r1 = load(yaml).plan(2 * GIB, &random).expect("plans");
    let r2 = load(yaml).plan(2 * GIB, &random).expect("plans");
    assert_eq!(r1, r2);
    let other = load(yaml).plan(2 * GIB, &RandomIds::new()).expect("plans");
    assert_ne!(r1.filesystems, other.filesystems);
    let text = random.uuid(Purpose::FsUuid, "mkfs_root");
    assert_eq!(text[6] >> 4, 4, "version 4");
    assert_ne!(random.id32(Purpose::VfatVolumeId, "x"), 0);
}

#[test]
fn a_configured_uuid_wins() {
    let yaml = "
- local_loop:
    name: image0
    partitioning:
      label: mbr
      partitions:
        - name: root
          flags: [primary]
          size: 50%
          mkfs: {name: mkfs_root, uuid: 11111111-2222-3333-4444-555555555555, mount: {mount_point: /}}
        - name: esp
          flags: [primary]
          size: 10%
          mkfs: {type: vfat, uuid: ABCD-1234, mount: {mount_point: /boot/efi}}
";
    let disk = plan(yaml, GIB);
    let ids: Vec<String> = disk.filesystems.iter().map(|f| f.id.to_string()).collect();
    assert_eq!(ids, ["ABCD-1234", "11111111-2222-3333-4444-555555555555"]);
    let bad = yaml.replace("ABCD-1234", "not-an-id");
    assert_eq!(
        load(&bad).plan(GIB, &seed()).unwrap_err().to_string(),
        "mkfs mkfs_esp: uuid not-an-id is not a FAT volume id (8 hex digits)"
    );
}

#[test]
fn the_fallback_fills_the_bare_image() {
    let disk = plan(layouts::FALLBACK, 3 * GIB);
    assert_eq!(disk.table, None);
    assert!(disk.partitions.is_empty());
    let fs = &disk.filesystems[0];
    assert_eq!(
        (fs.offset, fs.size, fs.device.as_str()),
        (0, 3 * GIB, "image0")
    );
    // A local_loop size wins over the image-size param.
    let sized = layouts::FALLBACK.replace("name: image0", "name: image0\n    size: 1GiB");
    assert_eq!(plan(&sized, 3 * GIB).image_size, GIB);
    assert_eq!(layouts::for_element("block-device-gpt"), Some(layouts::GPT));
    assert_eq!(layouts::for_element("block-device-efi-lvm"), None);
}

#[test]
fn bases_must_be_of_a_fitting_kind() {
    let error = Graph::load(
        "- local_loop: {name: image0}\n- mount: {name: m, base: image0, mount_point: /}\n",
        &Params::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "mount m: base image0 is a local_loop node, not a mkfs"
    );
}
