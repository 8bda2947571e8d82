//! Build operating-system disk images from composable *elements*, as diskimage-builder does.
//!
//! An element is a folder of hook scripts grouped by phase (`root.d`, `extra-data.d`,
//! `install.d`, `finalise.d`, …), some of which run inside a chroot of the new OS. This crate
//! resolves element dependencies ([`elements`]: `ELEMENTS_PATH` lookup with overrides,
//! `element-deps`/`element-provides` expansion in a documented deterministic order, upstream's
//! error texts), squashes the elements' package lists ([`package_installs`]), maps package
//! names per distribution ([`pkg_map`]), parses size specs ([`size`]) and lays out and writes
//! MBR and GPT partition tables ([`mbr`], [`gpt`]), with identifiers derived from
//! `SOURCE_DATE_EPOCH` for reproducible images ([`reproducible`]). Still to come: planning and running the phases (through
//! the run-parts engine of `refresh-config`), the block-device graph, filesystems, and raw,
//! qcow2, tar and cpio outputs.
//!
//! It will not boot or deploy images (that is `baremetal`), and the image pipeline will not
//! require loop devices or root-only mounts.

pub mod blockdev;
pub mod build;
pub mod elements;
mod error;
pub mod image;
pub mod gpt;
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
