//! `qcow2-convert`: converts a raw disk image to qcow2 with dib-core, as
//! `qemu-img convert [-c] -f raw -O qcow2 RAW OUT` does (scripts/bench-qcow2.sh times the two).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dib_core::qcow2::{convert_raw, Qcow2Options, DEFAULT_CLUSTER_SIZE};
use tracing::{error, Level};
use tripleo_rs::logging;

/// Converts a raw disk image to a qcow2 (version 3) image.
#[derive(Debug, Parser)]
#[command(name = "qcow2-convert", version)]
struct Args {
    /// Compress the clusters (deflate, as qemu-img convert -c).
    #[arg(short)]
    compress: bool,
    /// Bytes per cluster (a power of two from 512 to 2097152).
    #[arg(long, default_value_t = DEFAULT_CLUSTER_SIZE)]
    cluster_size: u32,
    /// Threads compressing clusters (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the virtual size, allocated and compressed clusters and file size.
    #[arg(long)]
    stats: bool,
    /// The raw image.
    raw: PathBuf,
    /// The qcow2 image to write (replaced if it exists).
    output: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init("qcow2-convert", Level::WARN);
    let defaults = Qcow2Options::default();
    let options = Qcow2Options {
        compress: args.compress,
        cluster_size: args.cluster_size,
        threads: args.threads.unwrap_or(defaults.threads),
    };
    match convert_raw(&args.raw, &args.output, &options) {
        Ok(stats) => {
            if args.stats {
                let line = format!(
                    "virtual size {} bytes, {} clusters allocated ({} compressed), file size {} bytes",
                    stats.virtual_size,
                    stats.allocated_clusters,
                    stats.compressed_clusters,
                    stats.file_size
                );
                logging::print_line(line.as_bytes());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
