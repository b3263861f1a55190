//! Background work. Every task `serve` runs beside the requests (outbound delivery, the
//! scheduled jobs, the regression analysis, the rollout job, the folder watchers, the
//! invalidation listeners) is spawned through [`Tasks`], which keeps its handle: on shutdown
//! they are stopped one by one in the order they were spawned, each finishing the run it is
//! in, before the store closes.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A task's view of the stop signal.
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the task is asked to stop (at once if it was already).
    pub async fn requested(&mut self) {
        // An error means the sender is gone: nobody can stop the task any more, so it
        // runs until the runtime ends.
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

struct Task {
    name: &'static str,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The background tasks of one server.
#[derive(Default)]
pub struct Tasks {
    tasks: Vec<Task>,
}

impl Tasks {
    /// Runs `task` until it returns; it is given the [`Stopping`] signal to end on.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(Stopping) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopping) = watch::channel(false);
        let handle = tokio::spawn(task(Stopping(stopping)));
        self.tasks.push(Task { name, stop, handle });
    }

    /// Runs `work` at once and then every `every` until stopped. A run that fails is
    /// logged and the next one runs on time; a run that overruns delays the next (runs
    /// never overlap or pile up).
    pub fn spawn_every<F, Fut, E>(&mut self, name: &'static str, every: Duration, work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        self.spawn_paced(name, every, 1.0, work);
    }

    /// As [`Tasks::spawn_every`], and a run that took `d` is followed by a pause long
    /// enough that runs take at most `busy_share` of the time (each starts at least
    /// `d / busy_share` after the one before): work whose cost grows with the data (a
    /// figure over the whole fleet) slows down rather than keeping a core busy.
    pub fn spawn_paced<F, Fut, E>(
        &mut self,
        name: &'static str,
        every: Duration,
        busy_share: f64,
        mut work: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Display,
    {
        self.spawn(name, move |mut stopping| async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(error) = work().await {
                    tracing::warn!(event = "background_task_failed", task = name, error = %error,
                        "background task failed; it runs again at its next interval");
                }
                let gap = every.max(started.elapsed().div_f64(busy_share));
                tokio::select! {
                    () = stopping.requested() => return,
                    () = tokio::time::sleep_until(started + gap) => {}
                }
            }
        });
    }

    /// The names of the running tasks, in the order they stop.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|task| task.name).collect()
    }

    /// Stops every task, one by one in the order they were spawned: each finishes the run
    /// it is in (a delivery round, a job) before the next is asked to stop.
    pub async fn stop(self) {
        for task in self.tasks {
            let _ = task.stop.send(true);
            if let Err(error) = task.handle.await {
                tracing::warn!(event = "background_task_ended_badly", task = task.name, error = %error,
                    "a background task panicked or was cancelled");
            }
        }
    }
}
