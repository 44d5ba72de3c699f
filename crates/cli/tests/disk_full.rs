//! A full disk under the embedded store: nothing the client was told is stored may be
//! missing later — not while the disk is full, not once space is freed, not after a
//! restart. Messages that cannot be saved are refused (`storage_unavailable`), runs that
//! cannot be saved end as `run_failed` with that code, and `/api/health` says so.
//!
//! The data dir is a small tmpfs mounted for the test (root is needed: the test fails,
//! loudly, where it cannot mount one).
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("the mount command runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed ({status}): the disk-full test needs root (or CAP_SYS_ADMIN) to mount one"
        );
        Self { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

/// What one message got: refused (with its code), or accepted with every frame the
/// client saw of its run.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Accepted { run_id: String, token: String, events: Vec<Value> },
}

async fn ask(url: &str, text: &str) -> Outcome {
    let mut client = try_connect(url, By::Demo).await.expect("connects while the disk is full");
    client.send(json!({"type": "user_message", "text": text})).await;
    let reply = client.next_json().await;
    if reply["type"] == "error" {
        return Outcome::Refused(reply["code"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(reply["type"], "message_accepted", "{reply}");
    let run_id = reply["run_id"].as_str().unwrap().to_owned();
    let events = client.events_until_terminal().await;
    // Contiguous from 1, whatever happened.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i as u64 + 1), "{events:?}");
    }
    Outcome::Accepted { run_id, token: client.token.clone().expect("a demo token"), events }
}

async fn stored_events(server: &ServeProcess, token: &str, run_id: &str) -> Option<Vec<Value>> {
    let response = http_client()
        .get(server.http(&format!("/api/runs/{run_id}/events?after_seq=0")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    if response.status().as_u16() == 404 {
        return None;
    }
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    Some(body["events"].as_array().expect("an events array").clone())
}

/// Every event a client saw of an accepted run is stored, the same; the one exception is
/// a terminal `run_failed` `storage_unavailable`, which said it was not saved: then the
/// store ends the run at that seq with a terminal of its own.
async fn assert_stored_as_seen(server: &ServeProcess, outcomes: &[Outcome], when: &str) {
    for outcome in outcomes {
        let Outcome::Accepted { run_id, token, events } = outcome else { continue };
        let stored =
            stored_events(server, token, run_id).await.unwrap_or_else(|| panic!("{when}: accepted run {run_id} is missing"));
        for seen in events {
            let seq = seen["seq"].as_u64().unwrap() as usize;
            let unsaved_end = seen["type"] == "run_failed";
            match stored.get(seq - 1) {
                Some(s) if s["type"] == seen["type"] => {}
                Some(s) if unsaved_end && s["seq"] == seen["seq"] => {}
                None if unsaved_end => {}
                other => panic!("{when}: run {run_id} event {seq} was seen as {} and is stored as {other:?}", seen["type"]),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_loses_an_acknowledged_message() {
    let disk = Tmpfs::mount("8m");
    let data = disk.path.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data_dir = data.to_str().unwrap().to_owned();
    let env = [("APEX_DATA_DIR", data_dir.as_str())];
    let server = ServeProcess::start_in(tempfile::tempdir().unwrap(), &env).await;
    // A run while there is room: the store works.
    let first = ask(&server.ws_url(), "Analyze my AI costs").await;
    assert!(
        matches!(&first, Outcome::Accepted { events, .. } if events.last().unwrap()["type"] == "final_response"),
        "{first:?}"
    );

    let filler = fill(&disk.path);
    let mut outcomes = vec![first];
    let started = Instant::now();
    for i in 0..6 {
        let asked = Instant::now();
        let outcome = ask(&server.ws_url(), &format!("Analyze my AI costs, take {i}")).await;
        if let Outcome::Refused(code) = &outcome {
            assert_eq!(code, "storage_unavailable", "refused with a typed, retryable error");
            assert!(asked.elapsed() < Duration::from_secs(10), "refused promptly, not after a long wait");
        }
        outcomes.push(outcome);
    }
    let refused = outcomes.iter().filter(|o| matches!(o, Outcome::Refused(_))).count();
    assert!(refused >= 1, "with the disk full, something must have been refused: {outcomes:?}");
    eprintln!("disk full: {refused} of 6 refused in {:.1} s", started.elapsed().as_secs_f64());

    // Readiness and metrics tell.
    let (status, health) = {
        let r = http_client().get(server.http("/api/health")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["components"]["store"]["writes"]["status"], "failing", "{health}");
    let metrics = http_client().get(server.http("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "apex_storage_failing 1"), "the gauge says storage fails");
    assert_stored_as_seen(&server, &outcomes, "while the disk is full").await;

    // Space comes back: the server notices by itself, and nothing acknowledged is missing.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = http_client().get(server.http("/api/health")).send().await.unwrap();
        if r.status().is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not notice that space came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_stored_as_seen(&server, &outcomes, "once space is freed").await;
    let after = ask(&server.ws_url(), "Analyze my AI costs").await;
    assert!(
        matches!(&after, Outcome::Accepted { events, .. } if events.last().unwrap()["type"] == "final_response"),
        "{after:?}"
    );
    outcomes.push(after);

    // And after a restart.
    drop(server);
    let server = ServeProcess::start_in(tempfile::tempdir().unwrap(), &env).await;
    assert_stored_as_seen(&server, &outcomes, "after a restart").await;
}
