//! Build operating-system disk images from composable *elements*, as diskimage-builder does.
//!
//! An element is a folder of hook scripts grouped by phase (`root.d`, `extra-data.d`,
//! `install.d`, `finalise.d`, …), some of which run inside a chroot of the new OS.
//!
//! Pure parts, tested with data: element resolution ([`elements`]: `ELEMENTS_PATH` lookup
//! with overrides, `element-deps`/`element-provides` expansion in a documented deterministic
//! order, upstream's error texts), package lists ([`package_installs`], [`pkg_map`]), size
//! specs ([`size`]), the block-device configuration and its disk plan ([`blockdev`]), MBR and
//! GPT layouts ([`mbr`], [`gpt`]) and identifiers derived from `SOURCE_DATE_EPOCH`
//! ([`reproducible`]).
//!
//! I/O parts: [`build`] runs a whole build (hooks assembled and run phase by phase through
//! the run-parts engine of `refresh-config`, [`phases`]), chroot phases enter a private mount
//! namespace, and a user namespace without root ([`sandbox`]), so no mount outlives its
//! phase; [`image`] assembles the disk without loop devices or mounts (`mke2fs -d` at an
//! offset) and writes tar/tgz, and [`qcow2`] converts raw images in Rust.
//!
//! It does not boot or deploy images (that is `baremetal`). LVM and filesystems with no
//! offline way to be filled (xfs) are refused: they would need loop devices and mounts.

pub mod blockdev;
pub mod build;
pub mod elements;
mod error;
pub mod gpt;
pub mod image;
pub mod mbr;
pub mod package_installs;
pub mod phases;
pub mod pkg_map;
pub mod qcow2;
pub mod reproducible;
pub mod sandbox;
pub mod size;

pub use elements::{env_output, expand, Element, ElementSet};
pub use error::Error;
