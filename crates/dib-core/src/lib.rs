//! Build operating-system disk images from composable *elements*, as diskimage-builder does.
//!
//! An element is a folder of hook scripts grouped by phase (`root.d`, `extra-data.d`,
//! `install.d`, `finalise.d`, …), some of which run inside a chroot of the new OS. This crate
//! will resolve element dependencies, plan and run the phases (through the run-parts engine of
//! `refresh-config`), lay out block devices, and write raw, qcow2, tar and cpio outputs.
//!
//! Not implemented yet: this crate is a placeholder that fixes the workspace shape. It will not
//! boot or deploy images (that is `baremetal`), and the image pipeline will not require loop
//! devices or root-only mounts.
