//! Log lines in the upstream formats, through `tracing`.
//!
//! Events with target [`RUN_PARTS`] print as `dib-run-parts <date(1) output> message`; all
//! others as Python's logging does for os-refresh-config:
//! `[2024-01-31 12:00:00,123] (os-refresh-config) [INFO] message`.

use std::ffi::CStr;
use std::fmt;
use std::io::Write as _;

use refresh_config::{Event, HookOutcome, PhaseFailure, SkipReason};
use tracing::{error, info, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The tracing target of run-parts lines.
pub const RUN_PARTS: &str = "dib-run-parts";

/// Installs the stderr logger: `program`'s own messages at `level` and above, run-parts lines
/// (hooks starting, finishing, failing; profiling) at INFO whatever `level` says, as upstream
/// prints them whatever os-refresh-config's `--log-level`.
pub fn init(program: &'static str, level: Level) {
    init_with_file(program, level, None);
}

/// As [`init`], also appending every line to `log_file`.
pub fn init_with_file(program: &'static str, level: Level, log_file: Option<std::fs::File>) {
    // SAFETY: tzset only reads TZ and /etc/localtime into libc's globals; it runs before any
    // other thread that could call localtime_r exists.
    unsafe { tzset() };
    let filter = Targets::new()
        .with_target(RUN_PARTS, Level::INFO)
        .with_default(level);
    let builder = tracing_subscriber::fmt()
        .with_max_level(Level::TRACE)
        .event_format(UpstreamFormat {
            style: Style::Python { program },
        });
    match log_file {
        Some(file) => builder
            .with_writer(std::io::stderr.and(std::sync::Arc::new(file)))
            .finish()
            .with(filter)
            .init(),
        None => builder
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .init(),
    }
}

/// Logging for `--logfile` runs: only errors on stderr, everything from `level` up appended
/// to `log_file`, as upstream's quiet-with-logfile mode does.
pub fn init_quiet_with_file(program: &'static str, level: Level, log_file: std::fs::File) {
    use tracing_subscriber::Layer as _;
    // SAFETY: as in `init`.
    unsafe { tzset() };
    let format = || UpstreamFormat {
        style: Style::Python { program },
    };
    let terminal = tracing_subscriber::fmt::layer()
        .event_format(format())
        .with_writer(std::io::stderr)
        .with_filter(Targets::new().with_default(Level::ERROR));
    let file = tracing_subscriber::fmt::layer()
        .event_format(format())
        .with_writer(std::sync::Arc::new(log_file))
        .with_filter(
            Targets::new()
                .with_target(RUN_PARTS, Level::INFO)
                .with_default(level),
        );
    tracing_subscriber::registry()
        .with(terminal)
        .with(file)
        .init();
}

/// Installs os-apply-config's logger: `[2024/01/31 12:00:00 PM] [INFO] message` on stderr
/// and, when `log_file` is given, appended there too.
///
/// Lines are buffered (a large tree logs a line per file: one write per line cost more than
/// the rendering) and written when the returned guard is dropped, or as the buffer fills:
/// keep the guard alive until the program ends.
#[must_use = "log lines are written when the guard is dropped"]
pub fn init_apply_config(level: Level, log_file: Option<std::fs::File>) -> LogFlush {
    // SAFETY: as in `init`.
    unsafe { tzset() };
    let sink = std::sync::Arc::new(BufferedSink {
        outputs: std::sync::Mutex::new(Outputs {
            stderr: std::io::BufWriter::with_capacity(1 << 16, std::io::stderr()),
            file: log_file.map(|f| std::io::BufWriter::with_capacity(1 << 16, f)),
        }),
    });
    tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(UpstreamFormat {
            style: Style::ApplyConfig,
        })
        .with_writer(std::sync::Arc::clone(&sink))
        .init();
    LogFlush { sink }
}

/// Writes buffered log lines out when dropped.
#[derive(Debug)]
pub struct LogFlush {
    sink: std::sync::Arc<BufferedSink>,
}

impl Drop for LogFlush {
    fn drop(&mut self) {
        if let Ok(mut outputs) = self.sink.outputs.lock() {
            let _ = outputs.stderr.flush();
            if let Some(file) = &mut outputs.file {
                let _ = file.flush();
            }
        }
    }
}

#[derive(Debug)]
struct Outputs {
    stderr: std::io::BufWriter<std::io::Stderr>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

/// stderr and the log file behind one lock, so that both get whole lines in the same order.
#[derive(Debug)]
struct BufferedSink {
    outputs: std::sync::Mutex<Outputs>,
}

impl std::io::Write for &BufferedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut outputs = self
            .outputs
            .lock()
            .map_err(|_| std::io::Error::other("log lock poisoned"))?;
        outputs.stderr.write_all(buf)?;
        if let Some(file) = &mut outputs.file {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Python logging's name for a level.
fn python_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

extern "C" {
    fn tzset();
}

/// The log line layouts of the upstream tools.
enum Style {
    /// Python logging as os-refresh-config and os-collect-config configure it.
    Python { program: &'static str },
    /// os-apply-config's `[%Y/%m/%d %I:%M:%S %p] [LEVEL]`.
    ApplyConfig,
}

struct UpstreamFormat {
    style: Style,
}

impl<S, N> FormatEvent<S, N> for UpstreamFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() == RUN_PARTS {
            write!(
                writer,
                "{RUN_PARTS} {} ",
                local_time("%a %b %e %H:%M:%S %Z %Y", false)
            )?;
        } else {
            let level = python_level(meta.level());
            match self.style {
                Style::Python { program } => write!(
                    writer,
                    "[{}] ({program}) [{level}] ",
                    local_time("%Y-%m-%d %H:%M:%S", true)
                )?,
                Style::ApplyConfig => write!(
                    writer,
                    "[{}] [{level}] ",
                    local_time("%Y/%m/%d %I:%M:%S %p", false)
                )?,
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The local time through strftime, as date(1) and Python print it; `millis` appends `,mmm`.
fn local_time(format: &str, millis: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    let mut buf = [0u8; 128];
    let Ok(format) = std::ffi::CString::new(format) else {
        return String::new();
    };
    // SAFETY: tm is plain data filled by localtime_r; strftime writes at most buf.len() bytes
    // and NUL-terminates on success (a zero return leaves an empty string).
    let text = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm);
        CStr::from_bytes_until_nul(&buf[..=n])
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if millis {
        format!("{text},{:03}", now.subsec_millis())
    } else {
        text
    }
}

/// Logs one run-parts event the way dib-run-parts does, plus the project's skip and failure
/// lines and the profiling block.
pub fn log_run_parts_event(event: &Event<'_>) {
    match event {
        Event::Skipped {
            skipped, filter, ..
        } => {
            let name = skipped.name.to_string_lossy();
            match skipped.reason {
                SkipReason::NameMismatch => {
                    info!(target: RUN_PARTS, "Skipping {name}: name does not match {}", filter.pattern())
                }
                reason => info!(target: RUN_PARTS, "Skipping {name}: {reason}"),
            }
        }
        Event::SourcingEnvironment { path } => {
            info!(target: RUN_PARTS, "Sourcing environment file {}", path.display())
        }
        Event::HookStarting { path } => info!(target: RUN_PARTS, "Running {}", path.display()),
        Event::HookFinished { hook } => {
            let name = hook.name.to_string_lossy();
            match &hook.outcome {
                HookOutcome::Exited(0) => info!(target: RUN_PARTS, "{name} completed"),
                HookOutcome::Exited(code) => {
                    error!(target: RUN_PARTS, "{name} failed with status {code}")
                }
                outcome @ HookOutcome::TimedOut(_) => error!(target: RUN_PARTS, "{name} {outcome}"),
                HookOutcome::NotExecuted { status, reason } => error!(
                    target: RUN_PARTS,
                    "{name} failed with status {status}: cannot execute {}: {reason}",
                    hook.path.display()
                ),
                outcome => error!(
                    target: RUN_PARTS,
                    "{name} failed with status {} ({outcome})",
                    outcome.status()
                ),
            }
        }
        Event::Finished { report } => {
            // A failing hook was logged as it finished; other failures are logged here.
            if matches!(&report.failure, Some(f) if *f != PhaseFailure::Hook) {
                error!(target: RUN_PARTS, "{}", report.failure_summary().unwrap_or_default());
            }
            if !report.hooks.is_empty() || report.succeeded() {
                for line in refresh_config::profile_lines(report) {
                    info!(target: RUN_PARTS, "{line}");
                }
            }
        }
        _ => {}
    }
}

/// Writes `bytes` and a newline to stdout; false if stdout is gone.
pub fn print_line(bytes: &[u8]) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .is_ok()
}
