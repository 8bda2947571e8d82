//! Network-boot configuration as data (spec §3): the per-node boot file for PXELINUX, iPXE or
//! GRUB, the per-MAC names that point at it, the shared `boot.ipxe` and GRUB master config,
//! and ([`dnsmasq`]) the DHCP/TFTP server's configuration.
//!
//! Nothing here touches the disk: [`node_entries`] returns the files, links and images a boot
//! root must hold for one node, as paths relative to that root, and the caller writes them.
//! Layout, as Ironic's: `<uuid>/config` with `<uuid>/deploy_kernel`, `<uuid>/deploy_ramdisk`
//! (and `<uuid>/kernel`, `<uuid>/ramdisk` for a netbooted partition image) beside it, and one
//! link per PXE-enabled MAC:
//!
//! | loader | per-MAC name for 52:54:00:aa:bb:01 |
//! |---|---|
//! | PXELINUX | `pxelinux.cfg/01-52-54-00-aa-bb-01` |
//! | iPXE | `pxelinux.cfg/52-54-00-aa-bb-01` (`${mac:hexhyp}`) |
//! | GRUB | `52:54:00:aa:bb:01.conf` (Ironic's, via the master config) and `grub.cfg-01-52-54-00-aa-bb-01` (GRUB's own search) |

pub mod dnsmasq;

use std::fmt::Write as _;

use uuid::Uuid;

use crate::node::{MacAddress, Node};
use crate::Error;

/// The boot loader that fetches the per-MAC file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// PXELINUX (BIOS) over TFTP.
    Pxelinux,
    /// iPXE over HTTP, chained from `boot.ipxe`.
    Ipxe,
    /// GRUB (UEFI) over TFTP.
    Grub,
}

/// Settings shared by every node's boot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    /// The TFTP root as the loader sees absolute paths (`/tftpboot`): PXELINUX and GRUB files
    /// name kernels by absolute path under it.
    pub tftp_root: String,
    /// The URL of the HTTP root (`http://192.0.2.1:8088`); iPXE needs it, files are fetched by
    /// absolute URL because relative names resolve against the chained script.
    pub http_url: Option<String>,
    /// The TFTP server address the deploy ramdisk is told (`boot_server=`, GRUB only).
    pub tftp_server: Option<String>,
    /// Ironic's `pxe_append_params`.
    pub append: String,
    /// The API the deploy agent calls back (`ipa-api-url=`).
    pub ipa_api_url: Option<String>,
    /// `ipa-global-request-id=`.
    pub request_id: Option<String>,
    /// GRUB: `linuxefi`/`initrdefi` instead of `linux`/`initrd` (older shim-signed GRUBs).
    pub grub_efi_commands: bool,
    /// iPXE: `--timeout` of kernel and initrd downloads, in milliseconds.
    pub ipxe_timeout_ms: Option<u32>,
}

impl Default for BootSettings {
    fn default() -> Self {
        BootSettings {
            tftp_root: "/tftpboot".to_owned(),
            http_url: None,
            tftp_server: None,
            append: "nofb vga=normal".to_owned(),
            ipa_api_url: None,
            request_id: None,
            grub_efi_commands: false,
            ipxe_timeout_ms: None,
        }
    }
}

/// How the deployed instance boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instance {
    /// The image carries its own partition table and bootloader: boot the local disk.
    /// `disk_id` is the MBR signature PXELINUX's `chain.c32` looks for (`0x1234abcd`); without
    /// it the first disk is chained.
    WholeDisk { disk_id: Option<String> },
    /// A partition image netbooted with its own kernel and ramdisk, nova-baremetal style:
    /// `root` is the kernel's `root=` (`UUID=…`), `append` more kernel arguments.
    Partition { root: String, append: String },
}

/// Which entry the boot file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    /// The deploy ramdisk (deploying, cleaning, inspecting, rescuing).
    Deploy,
    /// The instance.
    Instance,
}

/// One node's boot: its identity, the MACs it boots from, and what to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBoot {
    pub uuid: Uuid,
    pub macs: Vec<MacAddress>,
    pub instance: Option<Instance>,
    pub target: BootTarget,
}

impl NodeBoot {
    /// The deploy ramdisk for a node, from its PXE-enabled ports.
    pub fn deploy(node: &Node) -> NodeBoot {
        NodeBoot {
            uuid: node.uuid,
            macs: node.pxe_macs(),
            instance: None,
            target: BootTarget::Deploy,
        }
    }
}

/// Which image a boot root must hold at an [`Entry::Image`] path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRole {
    DeployKernel,
    DeployRamdisk,
    /// The instance kernel of a netbooted partition image.
    Kernel,
    /// The instance ramdisk of a netbooted partition image.
    Ramdisk,
}

impl ImageRole {
    fn file_name(self) -> &'static str {
        match self {
            ImageRole::DeployKernel => "deploy_kernel",
            ImageRole::DeployRamdisk => "deploy_ramdisk",
            ImageRole::Kernel => "kernel",
            ImageRole::Ramdisk => "ramdisk",
        }
    }
}

/// Something a boot root holds, by path relative to the root (TFTP root for PXELINUX and
/// GRUB, HTTP root for iPXE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        path: String,
        contents: String,
    },
    /// A symbolic link; `target` is relative to the link's folder.
    Link {
        path: String,
        target: String,
    },
    /// An image the caller copies or links in.
    Image {
        path: String,
        role: ImageRole,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Link { path, .. } | Entry::Image { path, .. } => path,
        }
    }
}

/// PXELINUX's name: `pxelinux.cfg/01-52-54-00-aa-bb-01` (`01` is the Ethernet ARP type).
pub fn pxelinux_name(mac: MacAddress) -> String {
    format!("pxelinux.cfg/01-{}", mac.hyphenated())
}

/// iPXE's name, `${mac:hexhyp}` without a type: `pxelinux.cfg/52-54-00-aa-bb-01`.
pub fn ipxe_name(mac: MacAddress) -> String {
    format!("pxelinux.cfg/{}", mac.hyphenated())
}

/// Ironic's GRUB name, sourced by the master config via `$net_default_mac`:
/// `52:54:00:aa:bb:01.conf`.
pub fn grub_name(mac: MacAddress) -> String {
    format!("{mac}.conf")
}

/// GRUB's own per-MAC search name: `grub.cfg-01-52-54-00-aa-bb-01`.
pub fn grub_search_name(mac: MacAddress) -> String {
    format!("grub.cfg-01-{}", mac.hyphenated())
}

/// Every entry one node needs under the boot root: its config, one link per MAC name, and the
/// images the config refers to.
pub fn node_entries(
    loader: Loader,
    settings: &BootSettings,
    boot: &NodeBoot,
) -> Result<Vec<Entry>, Error> {
    if boot.macs.is_empty() {
        return Err(Error::Boot {
            field: "macs".to_owned(),
            message: format!("node {} has no PXE-enabled port", boot.uuid),
        });
    }
    let contents = render_node_config(loader, settings, boot)?;
    let uuid = boot.uuid;
    let config = format!("{uuid}/config");
    let mut entries = vec![Entry::File {
        path: config.clone(),
        contents,
    }];
    for mac in &boot.macs {
        let names = match loader {
            Loader::Pxelinux => vec![pxelinux_name(*mac)],
            Loader::Ipxe => vec![ipxe_name(*mac)],
            Loader::Grub => vec![grub_name(*mac), grub_search_name(*mac)],
        };
        for path in names {
            let target = if path.contains('/') {
                format!("../{config}")
            } else {
                config.clone()
            };
            entries.push(Entry::Link { path, target });
        }
    }
    for role in images(boot) {
        entries.push(Entry::Image {
            path: format!("{uuid}/{}", role.file_name()),
            role,
        });
    }
    Ok(entries)
}

/// The images a node's config refers to.
fn images(boot: &NodeBoot) -> Vec<ImageRole> {
    let mut out = vec![ImageRole::DeployKernel, ImageRole::DeployRamdisk];
    if let Some(Instance::Partition { .. }) = boot.instance {
        out.extend([ImageRole::Kernel, ImageRole::Ramdisk]);
    }
    out
}

/// The per-node boot file (`<uuid>/config`).
pub fn render_node_config(
    loader: Loader,
    settings: &BootSettings,
    boot: &NodeBoot,
) -> Result<String, Error> {
    if boot.target == BootTarget::Instance && boot.instance.is_none() {
        return Err(Error::Boot {
            field: "target".to_owned(),
            message: format!("node {} boots its instance but none is given", boot.uuid),
        });
    }
    Ok(match loader {
        Loader::Pxelinux => pxelinux(settings, boot),
        Loader::Ipxe => ipxe(settings, boot, require_http(settings)?),
        Loader::Grub => grub(settings, boot),
    })
}

fn require_http(settings: &BootSettings) -> Result<&str, Error> {
    settings
        .http_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'))
        .ok_or_else(|| Error::Boot {
            field: "http_url".to_owned(),
            message: "required for iPXE".to_owned(),
        })
}

/// The kernel arguments of the deploy ramdisk, before loader-specific ones.
fn deploy_args(settings: &BootSettings) -> String {
    let mut args = vec!["selinux=0 troubleshoot=0 text".to_owned()];
    if !settings.append.trim().is_empty() {
        args.push(settings.append.trim().to_owned());
    }
    if let Some(url) = &settings.ipa_api_url {
        args.push(format!("ipa-api-url={url}"));
    }
    if let Some(id) = &settings.request_id {
        args.push(format!("ipa-global-request-id={id}"));
    }
    args.join(" ")
}

fn instance_args(root: &str, append: &str) -> String {
    let mut args = format!("root={root} ro");
    if !append.trim().is_empty() {
        args.push(' ');
        args.push_str(append.trim());
    }
    args
}

fn tftp_path(settings: &BootSettings, uuid: Uuid, role: ImageRole) -> String {
    format!(
        "{}/{uuid}/{}",
        settings.tftp_root.trim_end_matches('/'),
        role.file_name()
    )
}

fn label(boot: &NodeBoot) -> &'static str {
    match (boot.target, &boot.instance) {
        (BootTarget::Instance, Some(Instance::WholeDisk { .. })) => "boot_whole_disk",
        (BootTarget::Instance, Some(Instance::Partition { .. })) => "boot_partition",
        _ => "deploy",
    }
}

fn pxelinux(settings: &BootSettings, boot: &NodeBoot) -> String {
    let path = |role| tftp_path(settings, boot.uuid, role);
    let mut s = String::new();
    let _ = writeln!(s, "default {}", label(boot));
    let _ = writeln!(s);
    let _ = writeln!(s, "label deploy");
    let _ = writeln!(s, "kernel {}", path(ImageRole::DeployKernel));
    let _ = writeln!(
        s,
        "append initrd={} {}",
        path(ImageRole::DeployRamdisk),
        deploy_args(settings)
    );
    let _ = writeln!(s, "ipappend 2");
    match &boot.instance {
        Some(Instance::WholeDisk { disk_id }) => {
            let _ = writeln!(s);
            let _ = writeln!(s, "label boot_whole_disk");
            let _ = writeln!(s, "COM32 chain.c32");
            match disk_id {
                Some(id) => {
                    let _ = writeln!(s, "append mbr:{id}");
                }
                None => {
                    let _ = writeln!(s, "append hd0");
                }
            }
        }
        Some(Instance::Partition { root, append }) => {
            let _ = writeln!(s);
            let _ = writeln!(s, "label boot_partition");
            let _ = writeln!(s, "kernel {}", path(ImageRole::Kernel));
            let _ = writeln!(
                s,
                "append initrd={} {}",
                path(ImageRole::Ramdisk),
                instance_args(root, append)
            );
        }
        None => {}
    }
    s
}

fn ipxe(settings: &BootSettings, boot: &NodeBoot, base: &str) -> String {
    let uuid = boot.uuid;
    let url = |role: ImageRole| format!("{base}/{uuid}/{}", role.file_name());
    let timeout = settings
        .ipxe_timeout_ms
        .map_or(String::new(), |t| format!("--timeout {t} "));
    let start = label(boot);
    let mut s = String::new();
    let _ = writeln!(s, "#!ipxe");
    let _ = writeln!(s);
    let _ = writeln!(s, "set attempts:int32 10");
    let _ = writeln!(s, "set i:int32 0");
    let _ = writeln!(s);
    let _ = writeln!(s, "goto {start}");
    let _ = writeln!(s);
    let _ = writeln!(s, ":deploy");
    let _ = writeln!(s, "imgfree");
    let _ = writeln!(
        s,
        "kernel {timeout}{} {} BOOTIF=${{mac}} initrd=deploy_ramdisk || goto retry",
        url(ImageRole::DeployKernel),
        deploy_args(settings)
    );
    let _ = writeln!(
        s,
        "initrd {timeout}{} || goto retry",
        url(ImageRole::DeployRamdisk)
    );
    let _ = writeln!(s, "boot");
    match &boot.instance {
        Some(Instance::WholeDisk { .. }) => {
            let _ = writeln!(s);
            let _ = writeln!(s, ":boot_whole_disk");
            let _ = writeln!(s, "sanboot --no-describe || exit 0");
        }
        Some(Instance::Partition { root, append }) => {
            let _ = writeln!(s);
            let _ = writeln!(s, ":boot_partition");
            let _ = writeln!(s, "imgfree");
            let _ = writeln!(
                s,
                "kernel {timeout}{} {} initrd=ramdisk || goto retry",
                url(ImageRole::Kernel),
                instance_args(root, append)
            );
            let _ = writeln!(
                s,
                "initrd {timeout}{} || goto retry",
                url(ImageRole::Ramdisk)
            );
            let _ = writeln!(s, "boot");
        }
        None => {}
    }
    let _ = writeln!(s);
    let _ = writeln!(s, ":retry");
    let _ = writeln!(s, "iseq ${{i}} ${{attempts}} && goto fail ||");
    let _ = writeln!(s, "inc i");
    let _ = writeln!(s, "echo No response, retrying in ${{i}} seconds.");
    let _ = writeln!(s, "sleep ${{i}}");
    // Retries re-enter the entry that downloads (a whole-disk boot downloads nothing).
    let again = if start == "boot_whole_disk" {
        "deploy"
    } else {
        start
    };
    let _ = writeln!(s, "goto {again}");
    let _ = writeln!(s);
    let _ = writeln!(s, ":fail");
    let _ = writeln!(
        s,
        "echo Failed to get a response after ${{attempts}} attempts"
    );
    let _ = writeln!(s, "echo Powering off in 30 seconds.");
    let _ = writeln!(s, "sleep 30");
    let _ = writeln!(s, "poweroff");
    s
}

fn grub(settings: &BootSettings, boot: &NodeBoot) -> String {
    let path = |role| tftp_path(settings, boot.uuid, role);
    let (linux, initrd) = if settings.grub_efi_commands {
        ("linuxefi", "initrdefi")
    } else {
        ("linux", "initrd")
    };
    let mut deploy = deploy_args(settings);
    if let Some(server) = &settings.tftp_server {
        let _ = write!(deploy, " boot_server={server}");
    }
    let mut s = String::new();
    let _ = writeln!(s, "set default={}", label(boot));
    let _ = writeln!(s, "set timeout=5");
    let _ = writeln!(s);
    let _ = writeln!(s, "menuentry \"deploy\" {{");
    let _ = writeln!(s, "    {linux} {} {deploy}", path(ImageRole::DeployKernel));
    let _ = writeln!(s, "    {initrd} {}", path(ImageRole::DeployRamdisk));
    let _ = writeln!(s, "}}");
    match &boot.instance {
        Some(Instance::WholeDisk { .. }) => {
            // Back to the firmware, which boots its next entry: the disk.
            let _ = writeln!(s);
            let _ = writeln!(s, "menuentry \"boot_whole_disk\" {{");
            let _ = writeln!(s, "    exit");
            let _ = writeln!(s, "}}");
        }
        Some(Instance::Partition { root, append }) => {
            let _ = writeln!(s);
            let _ = writeln!(s, "menuentry \"boot_partition\" {{");
            let _ = writeln!(
                s,
                "    {linux} {} {}",
                path(ImageRole::Kernel),
                instance_args(root, append)
            );
            let _ = writeln!(s, "    {initrd} {}", path(ImageRole::Ramdisk));
            let _ = writeln!(s, "}}");
        }
        None => {}
    }
    s
}

/// The shared `boot.ipxe` at the HTTP root: chain the per-MAC script of the NIC iPXE booted
/// from, then of every NIC in turn; a script that returns ends iPXE with `exit 0` so the
/// firmware tries its next device; with no script for any NIC, reboot after 180 s.
pub fn boot_ipxe(settings: &BootSettings) -> Result<String, Error> {
    let base = require_http(settings)?;
    let mut s = String::new();
    let _ = writeln!(s, "#!ipxe");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "chain --autofree {base}/pxelinux.cfg/${{mac:hexhyp}} && goto chained ||"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "set n:int32 0");
    let _ = writeln!(s, ":next_nic");
    let _ = writeln!(s, "isset ${{net${{n}}/mac}} || goto none");
    let _ = writeln!(
        s,
        "chain --autofree {base}/pxelinux.cfg/${{net${{n}}/mac:hexhyp}} && goto chained ||"
    );
    let _ = writeln!(s, "inc n");
    let _ = writeln!(s, "goto next_nic");
    let _ = writeln!(s);
    let _ = writeln!(s, ":none");
    let _ = writeln!(
        s,
        "echo PXE boot failed: no configuration found for any of the present NICs."
    );
    let _ = writeln!(s, "echo Rebooting in 180 seconds, or press a key.");
    let _ = writeln!(s, "prompt --timeout 180000 ||");
    let _ = writeln!(s, "reboot");
    let _ = writeln!(s);
    let _ = writeln!(s, ":chained");
    let _ = writeln!(s, "exit 0");
    Ok(s)
}

/// The GRUB master config (`grub/grub.cfg` under the TFTP root): GRUB sources only
/// `$prefix/grub.cfg`, so this one sources the node's `<mac>.conf` by absolute path.
pub fn grub_master(settings: &BootSettings) -> String {
    let root = settings.tftp_root.trim_end_matches('/');
    let mut s = String::new();
    let _ = writeln!(s, "echo \"grub prefix: $prefix\"");
    let _ = writeln!(s, "source {root}/$net_default_mac.conf");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mac = MacAddress::parse("52:54:00:AA:BB:01").unwrap();
        assert_eq!(pxelinux_name(mac), "pxelinux.cfg/01-52-54-00-aa-bb-01");
        assert_eq!(ipxe_name(mac), "pxelinux.cfg/52-54-00-aa-bb-01");
        assert_eq!(grub_name(mac), "52:54:00:aa:bb:01.conf");
        assert_eq!(grub_search_name(mac), "grub.cfg-01-52-54-00-aa-bb-01");
    }

    #[test]
    fn refusals() {
        let boot = NodeBoot {
            uuid: Uuid::nil(),
            macs: vec![],
            instance: None,
            target: BootTarget::Deploy,
        };
        let s = BootSettings::default();
        assert!(node_entries(Loader::Pxelinux, &s, &boot)
            .unwrap_err()
            .to_string()
            .contains("no PXE-enabled port"));
        assert_eq!(
            boot_ipxe(&s).unwrap_err().to_string(),
            "boot config: http_url: required for iPXE"
        );
        let boot = NodeBoot {
            target: BootTarget::Instance,
            ..boot
        };
        assert!(render_node_config(Loader::Grub, &s, &boot).is_err());
    }
}
