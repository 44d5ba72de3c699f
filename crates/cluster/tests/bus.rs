//! The Redis bus between two instances, against a real Redis: published events reach the
//! other instance's subscribers in order, stop requests reach every instance.
use std::sync::Arc;
use std::time::Duration;

use apex_cluster::RedisCluster;
use apex_engine::Cluster;
use apex_protocol::RunId;

fn redis_url() -> String {
    std::env::var("APEX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn healthy(cluster: &RedisCluster) {
    for _ in 0..100 {
        if cluster.is_healthy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Redis at {} is needed by this test", redis_url());
}

#[tokio::test]
async fn events_published_on_one_instance_reach_subscribers_on_another_in_order() {
    let (a, b) = (RedisCluster::start(&redis_url()).unwrap(), RedisCluster::start(&redis_url()).unwrap());
    healthy(&a).await;
    healthy(&b).await;
    let run = RunId::new();
    let mut first = b.subscribe(run).await;
    let mut second = b.subscribe(run).await;
    let mut unrelated = b.subscribe(RunId::new()).await;
    for seq in 1..=500u64 {
        a.publish(run, seq, Arc::from(format!("{{\"seq\":{seq}}}")));
    }
    for rx in [&mut first, &mut second] {
        for seq in 1..=500u64 {
            let (got, json) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").unwrap();
            assert_eq!((got, &*json), (seq, format!("{{\"seq\":{seq}}}").as_str()));
        }
    }
    assert!(unrelated.try_recv().is_err(), "another run's subscribers get nothing");
    assert_eq!(a.dropped_events(), 0);
}

#[tokio::test]
async fn stop_requests_reach_every_instance() {
    let (a, b) = (RedisCluster::start(&redis_url()).unwrap(), RedisCluster::start(&redis_url()).unwrap());
    healthy(&a).await;
    healthy(&b).await;
    let mut on_a = a.stop_requests();
    let run = RunId::new();
    b.request_stop(run).await;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            // Other tests share this Redis: skip their requests.
            if on_a.recv().await.unwrap() == run {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the stop request arrived");
}
