//! A tracing subscriber that keeps each event (DEBUG and above) as a line of text, for tests
//! of what gets logged. Not TRACE: lapin traces every frame, bodies included.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The lines logged so far.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// The lines that contain `text`.
    pub(crate) fn lines_with(&self, text: &str) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

struct Capture(Captured);

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::DEBUG
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!("{} {}:", metadata.level(), metadata.target());
        event.record(&mut Line(&mut line));
        self.0.0.lock().unwrap().push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Writes each field as ` name=value`, values as their `Debug` (as `tracing-subscriber` does).
struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

/// Captures what this thread logs (the tasks of a current-thread runtime included) until the
/// guard is dropped.
pub(crate) fn capture_here() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let guard = tracing::subscriber::set_default(Capture(captured.clone()));
    (captured, guard)
}

/// Captures what every thread logs (lapin logs from its own I/O thread), from the first call
/// on, for the rest of the process.
pub(crate) fn capture_everywhere() -> Captured {
    static GLOBAL: OnceLock<Captured> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let captured = Captured::default();
            tracing::subscriber::set_global_default(Capture(captured.clone()))
                .expect("no other global subscriber in this test binary");
            captured
        })
        .clone()
}

/// `text` as a `Debug` of its bytes shows it (`[77, 65, ...]`, without the brackets): how
/// lapin logs a message's body.
pub(crate) fn as_logged_bytes(text: &str) -> String {
    let list = format!("{:?}", text.as_bytes());
    list.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}
