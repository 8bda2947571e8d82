//! [`RecordingRunner`]: runs nothing, records everything.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{
    Environment, EnvironmentLoad, EnvironmentRequest, HookCommand, HookOutcome, HookRunner,
    TimeLimit,
};
use crate::error::Result;

/// What [`RecordingRunner`] saw of one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedHook {
    pub path: PathBuf,
    pub environment: Option<Environment>,
    pub limit: Option<TimeLimit>,
}

/// A runner that executes nothing: it records each hook and answers with a scripted outcome
/// (success unless told otherwise). For testing code built on the engine.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub hooks: Vec<RecordedHook>,
    pub environment_requests: Vec<Vec<PathBuf>>,
    outcomes: HashMap<OsString, HookOutcome>,
    environment: Option<EnvironmentLoad>,
    interrupt_after: Option<(usize, i32)>,
}

impl RecordingRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hooks named `name` (in any directory) end with `outcome`.
    pub fn with_outcome(mut self, name: impl Into<OsString>, outcome: HookOutcome) -> Self {
        self.outcomes.insert(name.into(), outcome);
        self
    }

    /// What sourcing environment files yields (default: the runner's own environment).
    pub fn with_environment(mut self, load: EnvironmentLoad) -> Self {
        self.environment = Some(load);
        self
    }

    /// Once `hooks` hooks have run, report `signal` as pending (once), as a signal arriving
    /// between two hooks would be.
    pub fn with_interrupt_after(mut self, hooks: usize, signal: i32) -> Self {
        self.interrupt_after = Some((hooks, signal));
        self
    }

    /// Names of the hooks run so far, in order.
    pub fn names(&self) -> Vec<String> {
        self.hooks
            .iter()
            .map(|h| {
                h.path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl HookRunner for RecordingRunner {
    fn run_hook(&mut self, hook: &HookCommand<'_>) -> Result<HookOutcome> {
        self.hooks.push(RecordedHook {
            path: hook.path.to_owned(),
            environment: hook.environment.cloned(),
            limit: hook.limit,
        });
        let name = hook.path.file_name().unwrap_or_default();
        Ok(self
            .outcomes
            .get(name)
            .cloned()
            .unwrap_or(HookOutcome::Exited(0)))
    }

    fn load_environment(
        &mut self,
        request: &EnvironmentRequest<'_>,
        on_sourcing: &mut dyn FnMut(&Path),
    ) -> Result<EnvironmentLoad> {
        self.environment_requests.push(request.files.to_vec());
        request.files.iter().for_each(|f| on_sourcing(f));
        Ok(self.environment.clone().unwrap_or_else(|| {
            EnvironmentLoad::Loaded(Environment {
                vars: std::env::vars_os().collect(),
                cwd: std::env::current_dir().unwrap_or_default(),
                umask: 0o022,
            })
        }))
    }

    fn pending_interrupt(&mut self) -> Option<i32> {
        match self.interrupt_after {
            Some((after, signal)) if self.hooks.len() >= after => {
                self.interrupt_after = None;
                Some(signal)
            }
            _ => None,
        }
    }
}
