//! `element-info`: the elements a diskimage-builder build would use, as upstream
//! `element-info` prints them: the expanded names space-separated, or with `--env` the
//! `IMAGE_ELEMENT`, `IMAGE_ELEMENT_YAML` and `get_image_element_array` exports. Elements come
//! from `ELEMENTS_PATH`; the order is dib-core's deterministic one (breadth-first, ties by
//! name) where upstream's varies from run to run.

use std::process::ExitCode;

use clap::Parser;
use dib_core::{env_output, expand, ElementSet};
use tracing::{error, warn, Level};
use tripleo_rs::logging;

/// Displays the dependencies of the given elements.
#[derive(Debug, Parser)]
#[command(name = "element-info", version)]
struct Args {
    /// The elements requested.
    #[arg(required = true)]
    elements: Vec<String>,
    /// Output eval-able bash strings for the IMAGE_ELEMENT variables.
    #[arg(short, long)]
    env: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init("element-info", Level::WARN);
    let path = std::env::var("ELEMENTS_PATH").unwrap_or_default();
    let set = match ElementSet::load(&path) {
        Ok(set) => set,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for o in &set.overrides {
        warn!(
            "Element <{}> overrides <{}>",
            o.winner.display(),
            o.loser.display()
        );
    }
    let requested: Vec<&str> = args.elements.iter().map(String::as_str).collect();
    match expand(&set, &requested) {
        Ok(elements) => {
            let text = if args.env {
                env_output(&elements)
            } else {
                let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
                format!("{}\n", names.join(" "))
            };
            logging::print_line(text.trim_end_matches('\n').as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
