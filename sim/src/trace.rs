//! A readable trace of one run (`sim --seed S --trace`), stamped with
//! virtual time so that it is the same on every replay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct Trace(Option<Arc<Mutex<Vec<String>>>>);

impl Trace {
    pub fn enabled() -> Trace {
        Trace(Some(Arc::default()))
    }

    pub fn disabled() -> Trace {
        Trace(None)
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Records a line at the current host's virtual time; `line` is only
    /// built when tracing is on.
    pub fn log(&self, line: impl FnOnce() -> String) {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        self.log_at(elapsed, line);
    }

    pub fn log_at(&self, elapsed: Duration, line: impl FnOnce() -> String) {
        if let Some(lines) = &self.0 {
            let text = format!("{:>7.3} s  {}", elapsed.as_secs_f64(), line());
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(text);
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.as_ref().map_or_else(Vec::new, |lines| {
            lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }
}
