//! The server's own small adapters: the real clock and the random id generator.

use std::time::{SystemTime, UNIX_EPOCH};

use authgate_application::ports::{Clock, IdGenerator};
use authgate_domain::Timestamp;
use uuid::Uuid;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // The one place that reads the real clock; everything else asks this port.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Timestamp::from_unix(i64::try_from(seconds).unwrap_or(i64::MAX))
    }
}

/// Random version-4 UUIDs from the operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn new_id(&self) -> Uuid {
        Uuid::new_v4()
    }
}
