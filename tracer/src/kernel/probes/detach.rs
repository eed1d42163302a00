//! Detaching every probe at once. Closing the perf event of a tracepoint probe unregisters it
//! and waits for an RCU grace period (`perf_trace_event_unreg` ->
//! `tracepoint_synchronize_unregister`), 20-150 ms each on a busy 2-core machine: closed one
//! after another, the ~20 tracepoints made `tracer run -- true` take 1.7 s. Closed from one
//! thread each, the waits overlap and share grace periods.

/// The probes' links, owned here (taken out of aya's programs) so they can be dropped
/// together.
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    pub fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }

    /// Takes over the links of `other`.
    pub fn append(&mut self, mut other: Links) {
        self.0.append(&mut other.0);
    }

    /// Detaches every link, in parallel, and returns once all are gone.
    pub fn detach_all(&mut self) {
        let links = std::mem::take(&mut self.0);
        std::thread::scope(|scope| {
            for link in links {
                // A thread that cannot start leaves its link to be dropped here, in turn.
                let spawned = std::thread::Builder::new()
                    .name("tracer-detach".into())
                    .spawn_scoped(scope, move || drop(link));
                if let Err(err) = spawned {
                    log::debug!("detaching in turn: {err}");
                }
            }
        });
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.detach_all();
    }
}
