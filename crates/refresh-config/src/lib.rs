//! Run ordered hook phases: the engine of os-refresh-config and dib-run-parts, as a library.
//!
//! A *hook directory* holds executable scripts; the run-parts engine selects them
//! ([`select_hooks`]: executable regular files named `^[0-9A-Za-z_-]+$`), orders them
//! ([`compare_names`]: numeric prefix, then bytes), sources `DIR/../environment.d` once in a
//! real `bash`, runs each hook directly, and stops at the first failure ([`run_parts`]).
//! [`refresh`] runs the os-refresh-config phases (`pre-configure`, `configure`, an optional
//! `check`, `post-configure`, `migration`) over that engine, with `error.d` on failure, run-wide,
//! per-hook and error-handler time limits, and [`RunLock`] for one run at a time.
//!
//! Selection and ordering are pure functions over a directory listing. Execution goes through
//! the [`HookRunner`] trait: [`ProcessRunner`] runs real processes (each in its own process
//! group, terminated with SIGTERM then SIGKILL on expiry), [`RecordingRunner`] records calls
//! for tests, and a caller such as an image builder can wrap hooks in a chroot by implementing
//! the trait, reusing [`supervise`].
//!
//! What this crate does not do: it never prints (progress is reported through event callbacks,
//! and [`profile_lines`] formats the profiling block for the caller to print), it does not
//! parse command lines, and it does not install signal handlers unless the program asks for a
//! [`SignalPipe`]. Hooks' own output goes to the inherited stdout and stderr.

mod error;
mod interrupt;
mod lock;
mod order;
mod refresh;
mod run_parts;
mod runner;
mod select;

pub use error::{Error, Result};
pub use interrupt::{SignalPipe, FORWARDED_SIGNALS};
pub use lock::{holder_pid, RunLock};
pub use order::{compare_names, order_names};
pub use refresh::{
    plan, refresh, resolve_base_dir, BaseDir, PhasePlan, PhaseRun, RefreshEvent, RefreshOptions,
    RefreshReport, BASE_DIR_VAR, DEFAULT_BASE_DIR, LEGACY_BASE_DIR, PHASES, RUN_PHASES,
};
pub use run_parts::{
    environment_files, hook_path, list_hooks, profile_lines, run_parts, Deadline,
    EnvironmentSource, Event, HookRecord, PhaseFailure, PhaseReport, RunPartsOptions,
};
pub use runner::{
    supervise, BeforeExec, Capture, Environment, EnvironmentLoad, EnvironmentRequest, HookCommand,
    HookOutcome, HookRunner, LimitKind, ProcessRunner, RecordedHook, RecordingRunner, TimeLimit,
    TIMEOUT_STATUS,
};
pub use select::{
    read_listing, select_environment_files, select_hooks, Entry, EntryKind, Listing, NameFilter,
    Selection, SkipReason, Skipped, DEFAULT_NAME_PATTERN, RUN_PARTS_REGEX_VAR,
};
