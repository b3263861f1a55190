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

/// A paced task whose runs take longer than its interval waits so that its runs take at most
/// its share of the time; an unpaced one runs back to back.
#[tokio::test]
async fn a_paced_task_keeps_to_its_share_of_the_time() {
    let run = Duration::from_millis(20);
    let starts = |share: f64| {
        let starts: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
        let mut tasks = Tasks::default();
        let log = starts.clone();
        tasks.spawn_paced("figures", Duration::from_millis(1), share, move || {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(tokio::time::Instant::now());
                tokio::time::sleep(run).await;
                Ok::<(), String>(())
            }
        });
        (tasks, starts)
    };
    let (paced, paced_starts) = starts(0.25);
    let (unpaced, unpaced_starts) = starts(1.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    paced.stop().await;
    unpaced.stop().await;
    let paced_starts = paced_starts.lock().unwrap().clone();
    let gaps: Vec<Duration> = paced_starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        paced_starts.len() >= 2 && gaps.iter().all(|gap| *gap >= run * 4),
        "each run of 20 ms at a quarter of the time starts 80 ms or more after the last: {gaps:?}"
    );
    assert!(
        unpaced_starts.lock().unwrap().len() >= paced_starts.len() * 3,
        "the unpaced task ran back to back ({} runs against {})",
        unpaced_starts.lock().unwrap().len(),
        paced_starts.len()
    );
}
