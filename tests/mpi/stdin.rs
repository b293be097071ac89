//! `tessera mpi run` forwards its stdin to rank 0, then EOF, in every launch mode (the
//! `mpi_ring` example with `RING_STDIN=1`: rank 0 reads stdin to its end and broadcasts
//! it, every rank prints what it got); `submit` keeps rank 0's stdin closed; the stdin
//! endpoint takes one stream, from the submitter, while the job lives.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::mpi::*;
use crate::common::{bin, cluster, wait_until};

/// `tessera mpi run ARGS` with `input` on its stdin, closed after it.
fn run_with_stdin(master: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(["mpi", "run", "--master", master])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written on a thread: the CLI reads its stdin while the job runs.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    o
}

/// FNV-1a, 64 bits, as `mpi_ring` prints it.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The line rank `rank` prints when the job's stdin was `input`.
fn got(rank: u32, input: &[u8]) -> String {
    let text = String::from_utf8_lossy(&input[..input.len().min(200)]).replace('\n', "|");
    format!(
        "[{rank}] stdin: {} bytes, fnv {:016x}: {text}",
        input.len(),
        fnv(input)
    )
}

/// Two lines, and about 1 MB (many times the service's queue and the pipes' buffers,
/// so it only arrives whole if the path pushes back instead of dropping).
fn inputs() -> [Vec<u8>; 2] {
    let big = (0..40_000)
        .flat_map(|i| format!("line {i:06} of the input\n").into_bytes())
        .collect();
    [b"hello tessera\nsecond line\n".to_vec(), big]
}

#[test]
fn run_forwards_its_stdin_to_rank_0_in_every_launch_mode() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-stdin", &["--no-batch"]);
    let mpich_ring = example("mpi_ring");
    let ompi_ring = openmpi_ring();
    let modes: [(&[&str], &PathBuf); 3] = [
        (&["--launch", "pmi"], &mpich_ring),
        (&["--launch", "hydra"], &mpich_ring),
        (&["--impl", "openmpi"], &ompi_ring),
    ];
    for (mode, ring) in modes {
        for input in inputs() {
            let mut args = vec!["-n", "4", "--ppn", "2", "--cpus-per-rank", "0.1"];
            // Rank 0 waits for EOF: were it lost, the time limit ends the job.
            args.extend_from_slice(&["-t", "60s", "--env", "RING_STDIN=1"]);
            args.extend_from_slice(mode);
            args.push(ring.to_str().unwrap());
            let o = run_with_stdin(&c.addr, &args, &input);
            assert!(
                o.status.success(),
                "{mode:?}, {} bytes: {}\n{}",
                input.len(),
                out(&o),
                err(&o)
            );
            for rank in 0..4 {
                let line = got(rank, &input);
                assert!(
                    out(&o).contains(&line),
                    "{mode:?}: no {line:?} in\n{}",
                    out(&o)
                );
            }
        }
        assert_freed(&c);
    }

    // The job ends while the CLI's stdin is still open (the program never reads it): the
    // CLI returns with the job's status instead of waiting for its stdin to end.
    let mut child = bin()
        .args([
            "mpi",
            "run",
            "--master",
            &c.addr,
            "-n",
            "2",
            "--cpus-per-rank",
            "0.1",
        ])
        .arg(&mpich_ring)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let open_stdin = child.stdin.take();
    wait_until(
        "`tessera mpi run` returns, its stdin still open",
        60,
        || child.try_wait().unwrap().is_some(),
    );
    assert!(child.wait().unwrap().success());
    drop(open_stdin);
    assert_freed(&c);
}

/// POSTs `body` to `path`: the status and the JSON answer.
fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = post_json(addr, path, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn stdin_is_taken_once_from_the_submitter_of_a_live_job() {
    if !mpich() {
        return;
    }
    let c = cluster("mpi-stdin-rest", &["--no-batch"]);
    let ring = example("mpi_ring");
    let r = ring.to_str().unwrap();
    let mpi = |args: &[&str]| {
        bin()
            .args(["mpi", "--master", &c.addr])
            .args(args)
            .output()
            .unwrap()
    };
    let state = |id: u64| -> Value {
        serde_json::from_slice(&mpi(&["show", &id.to_string()]).stdout).unwrap_or(Value::Null)
    };

    let (status, v) = post(&c.addr, "/mpi/v1/jobs/999/stdin?token=t", "x");
    assert_eq!(
        (status, &v["reason"]),
        (404, &Value::from("unknown_job")),
        "{v}"
    );

    // `submit` keeps stdin closed, even with input piped to it, and refuses a stream.
    let mut child = bin()
        .args([
            "mpi", "submit", "--master", &c.addr, "-o", "json", "-n", "2",
        ])
        .args(["--cpus-per-rank", "0.1", "--env", "RING_STDIN=1", r])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not for the job\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let background = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_u64()
        .unwrap();
    let path = format!("/mpi/v1/jobs/{background}/stdin?token=anything");
    let (status, v) = post(&c.addr, &path, "x");
    assert_eq!(
        (status, &v["reason"]),
        (409, &Value::from("not_forwarded")),
        "{v}"
    );
    let logs = out(&mpi(&["logs", "-f", &background.to_string()]));
    for rank in 0..2 {
        assert!(logs.contains(&got(rank, b"")), "{logs}");
    }

    // A job submitted with stdin: the token it was handed, once.
    let job = format!(
        r#"{{"ranks": 2, "cpus_per_rank": 0.1, "mem_per_rank_mb": 64, "argv": ["{r}"],
            "env": {{"RING_STDIN": "1"}}, "time_limit_seconds": 60, "stdin": true}}"#
    );
    let (status, v) = post(&c.addr, "/mpi/v1/jobs", &job);
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    let token = v["stdin_token"].as_str().unwrap().to_string();
    let stdin = |token: &str| format!("/mpi/v1/jobs/{id}/stdin?token={token}");
    let (status, v) = post(&c.addr, &stdin("not-the-token"), "forged\n");
    assert_eq!(
        (status, &v["reason"]),
        (403, &Value::from("wrong_token")),
        "{v}"
    );
    // The forged stream claimed nothing: the submitter's goes through, whole.
    let (status, v) = post(&c.addr, &stdin(&token), "from the submitter\n");
    assert_eq!((status, &v["bytes"]), (200, &Value::from(19)), "{v}");
    let (status, v) = post(&c.addr, &stdin(&token), "again\n");
    assert_eq!(
        (status, &v["reason"]),
        (409, &Value::from("already_claimed")),
        "{v}"
    );
    wait_until("the job completes", 60, || {
        state(id)["state"] == "COMPLETED"
    });
    let logs = out(&mpi(&["logs", &id.to_string()]));
    for rank in 0..2 {
        assert!(logs.contains(&got(rank, b"from the submitter\n")), "{logs}");
    }
    let (status, v) = post(&c.addr, &stdin(&token), "late\n");
    assert_eq!((status, &v["reason"]), (409, &Value::from("ended")), "{v}");
    assert_freed(&c);
}
