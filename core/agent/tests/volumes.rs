//! Persistent volumes on a real agent with real processes: a task writes into its volume, a
//! later task using the same volume reads it; the volume's directory follows the Mesos
//! layout; `DestroyVolume` deletes it, and names or symlinks leading outside the volumes
//! root are refused. In a task's own mount namespace the volume is a bind mount, read-only
//! when the volume is `RO`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tessera_agent::Namespaces;
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::TaskState;
use tessera_types::parse::parse_json_resources;

/// 0.1 cpu, 32 MB and the volume `id` of role `eng` at `path`.
fn with_volume(id: &str, path: &str, mode: &str) -> Vec<pb::Resource> {
    let r = parse_json_resources(
        "r",
        &serde_json::json!([
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
            {"name": "disk", "type": "SCALAR", "scalar": {"value": 16},
             "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}],
             "disk": {"persistence": {"id": id},
                      "volume": {"container_path": path, "mode": mode}}}]),
    )
    .unwrap();
    tessera_api::convert::resources_to_pb(&r)
}

fn run(c: &Conn, id: &str, command: &str, resources: Vec<pb::Resource>) {
    let mut rt = run_task_message(id, command, "cpus:0.1", None, false, Vec::new(), None);
    if let Some(t) = rt.task.as_mut() {
        t.resources = resources;
    }
    c.send(MMsg::RunTask(rt));
}

fn destroy(c: &Conn, role: &str, id: &str) {
    c.send(MMsg::DestroyVolume(pb::DestroyVolume {
        role: role.into(),
        persistence_id: id.into(),
    }));
}

/// Waits (bounded) until `path` is gone.
async fn until_gone(path: &Path) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} still exists",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_in_a_volume_outlives_its_task_until_the_volume_is_destroyed() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    let dir = agent.work_dir.join("volumes/roles/eng/vol-1");

    run(
        &c,
        "writer",
        "echo kept > data/f",
        with_volume("vol-1", "data", "RW"),
    );
    let s = terminal_of(&mut c, "writer").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("f")).unwrap(),
        "kept\n",
        "the data is in the Mesos layout, outside the sandbox"
    );

    // A second task, in a fresh sandbox, finds it at another path.
    run(
        &c,
        "reader",
        "grep -qx kept state/db/f && echo more >> state/db/f",
        with_volume("vol-1", "state/db", "RW"),
    );
    let s = terminal_of(&mut c, "reader").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("f")).unwrap(),
        "kept\nmore\n"
    );

    // Hostile destroys are refused: a name that climbs out, and a role directory that was
    // replaced by a symlink to elsewhere. Then a real one, processed after them.
    let outside = agent.work_dir.join("outside");
    std::fs::create_dir_all(outside.join("v9")).unwrap();
    std::os::unix::fs::symlink(&outside, agent.work_dir.join("volumes/roles/ops")).unwrap();
    destroy(&c, "eng", "../../../outside");
    destroy(&c, "../outside", "v9");
    destroy(&c, "ops", "v9");
    destroy(&c, "eng", "vol-1");
    until_gone(&dir).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        outside.join("v9").is_dir(),
        "nothing outside the volumes root is deleted"
    );
    assert!(agent.work_dir.join("volumes/roles/eng").is_dir());

    // A task using the volume again starts from an empty directory.
    run(
        &c,
        "fresh",
        "test ! -e data/f",
        with_volume("vol-1", "data", "RW"),
    );
    let s = terminal_of(&mut c, "fresh").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");

    // A container path that would leave the sandbox never reaches the file system.
    let mut bad = with_volume("vol-2", "x", "RW");
    for v in bad.iter_mut().filter_map(|r| r.volume.as_mut()) {
        v.container_path = "../../escape".into();
    }
    run(&c, "hostile", "true", bad);
    let s = terminal_of(&mut c, "hostile").await;
    assert_eq!(state(&s), TaskState::TaskError, "{s:?}");
    assert!(
        s.message.unwrap_or_default().contains("container_path"),
        "the field is named"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_its_own_mount_namespace_a_task_gets_its_volume_bind_mounted() {
    if !namespaces_or_skip("volumes in a mount namespace") {
        return;
    }
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.namespaces = Namespaces::Auto;
    let agent = start_agent(cfg);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let dir = agent.work_dir.join("volumes/roles/eng/vol-ns");

    run(
        &c,
        "rw",
        "test -d data && ! test -L data && echo in-ns > data/f",
        with_volume("vol-ns", "data", "RW"),
    );
    let s = terminal_of(&mut c, "rw").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "in-ns\n");

    // RO: readable, not writable.
    run(
        &c,
        "ro",
        "grep -qx in-ns data/f && ! echo x 2>/dev/null > data/g",
        with_volume("vol-ns", "data", "RO"),
    );
    let s = terminal_of(&mut c, "ro").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert!(!dir.join("g").exists());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_executor_gets_its_tasks_volume() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (c, _) = m.accept_registered("agent-1").await;
    let dir = agent.work_dir.join("volumes/roles/eng/vol-ex");
    // The executor never subscribes; it only writes into its first task's volume, which
    // is in its sandbox at the volume's container path.
    let mut rt = run_task_message("t-ex", "", "cpus:0.1", None, false, Vec::new(), None);
    if let Some(t) = rt.task.as_mut() {
        t.resources = with_volume("vol-ex", "data", "RW");
        t.command = Some(pb::CommandInfo::default());
        t.executor_id = Some("ex".into());
        t.executor = Some(pb::ExecutorInfo {
            executor_id: "ex".into(),
            command: Some(pb::CommandInfo {
                value: "echo from-executor > data/f; sleep 60".into(),
                shell: true,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    c.send(MMsg::RunTask(rt));
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_to_string(dir.join("f")).ok().as_deref() != Some("from-executor\n") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the executor never wrote into {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
}
