//! The whole bank over a real server: the table (see it with `--no-capture`), the bank's
//! size, and a floor under the share of questions answered. The floor is a ratchet: raise
//! it when the analyst answers more.
use apex_eval::{evaluate, KINDS};

/// The share of questions answered (percent) below which this test fails.
const FLOOR_PERCENT: f64 = 95.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analyst_answers_the_bank() {
    let started = std::time::Instant::now();
    let report = evaluate(None, &Default::default()).await.expect("the bank runs");
    println!("{}", report.failures());
    println!("{}", report.table());
    println!("{} questions in {:.1?}", report.questions, started.elapsed());

    assert!(report.questions >= 110, "{} questions", report.questions);
    assert!(report.kinds.len() >= 16 && report.kinds.len() == KINDS.len(), "{} types", report.kinds.len());
    assert!(report.follow_ups() >= 20, "{} follow-ups", report.follow_ups());
    assert!(report.outcomes.iter().all(|o| o.error.is_none()), "every question gets an answer:\n{}", report.failures());
    assert!(
        report.share >= FLOOR_PERCENT,
        "{:.1}% of the bank answered, below the floor of {FLOOR_PERCENT}%:\n{}",
        report.share,
        report.failures()
    );
}
