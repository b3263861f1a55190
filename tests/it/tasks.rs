//! Background tasks (`api::tasks`): every one is kept, and on shutdown stopped in the order
//! it was spawned, each finishing the run it is in; a failed run does not end its task.

use api::tasks::Tasks;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn tasks_stop_in_order_and_finish_the_run_they_are_in() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Tasks::default();
    for name in ["delivery", "jobs", "watchers"] {
        let log = log.clone();
        tasks.spawn_every(name, Duration::from_millis(5), move || {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!("{name} start"));
                tokio::time::sleep(Duration::from_millis(30)).await;
                log.lock().unwrap().push(format!("{name} end"));
                Err::<(), _>("each run fails; the next one runs all the same")
            }
        });
    }
    assert_eq!(tasks.names(), ["delivery", "jobs", "watchers"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    tasks.stop().await;
    let stopped = log.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        *log.lock().unwrap(),
        stopped,
        "nothing runs after stop returns"
    );
    for name in ["delivery", "jobs", "watchers"] {
        let count = |what: &str| {
            stopped
                .iter()
                .filter(|line| **line == format!("{name} {what}"))
                .count()
        };
        assert!(
            count("start") >= 2,
            "{name} ran again after a failed run: {stopped:?}"
        );
        assert_eq!(
            count("start"),
            count("end"),
            "{name}'s last run was not cut off: {stopped:?}"
        );
    }
    let last_end = |name: &str| {
        stopped
            .iter()
            .rposition(|line| *line == format!("{name} end"))
            .unwrap()
    };
    assert!(
        last_end("delivery") < last_end("watchers"),
        "delivery stopped before the watchers: {stopped:?}"
    );
}
