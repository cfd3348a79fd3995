//! An apply interrupted anywhere converges (#20), the VM phase: the pvegpu binary applies the
//! lab's VM against the fake over HTTPS and is cut at every API call in turn, once before the
//! server acts on the call (the connection dropped on the way) and once after it acted but
//! before the answer came back (the process killed while it waited); the fake's workers finish
//! their tasks without the client, as PVE's do. A second `apply` must then succeed, leave the
//! cluster exactly as one uninterrupted apply does (the VM, its pending changes and power
//! state, every other VM and every mapping), and a plan after it must be empty.

#[path = "support/fake_pve/mod.rs"]
mod fake_pve;
mod support;
#[path = "support/vm_lab.rs"]
mod vm_lab;
use fake_pve::{Cut, ROOT_TOKEN_SECRET};
use std::time::{Duration, Instant};
use vm_lab::{Lab, TOKEN, command, pvegpu};

const APPLY: &[&str] = &["apply", "--yes", "-n", "pvetest"];

/// What an apply leaves: every VM's config file as PVE writes it (lock and pending section
/// included) and power state, and every mapping.
fn end_state(lab: &Lab) -> String {
    let st = lab.fake.state.lock().unwrap();
    let vms: Vec<String> = st
        .vms
        .iter()
        .map(|(id, vm)| format!("vm {id} running={}\n{}", vm.running, vm.render()))
        .collect();
    format!("{}\nmappings {:#?}", vms.join("\n"), st.mappings)
}

struct Sweep {
    calls: usize,
    cut: usize,
    finished_first: usize,
}

/// Cut the apply at each of its calls in turn, `cut` as given.
async fn sweep(cut: Cut, reference: &str, calls: usize) -> Sweep {
    let mut s = Sweep {
        calls,
        cut: 0,
        finished_first: 0,
    };
    for at in 1..=calls {
        let lab = Lab::start().await;
        let inv = lab.inventory(TOKEN, "");
        lab.fake.interrupt_at(at, cut);
        let mut child = command(&inv, APPLY, ROOT_TOKEN_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if lab.fake.interrupted() {
                child.kill().unwrap();
                child.wait().unwrap();
                s.cut += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                // this run made fewer calls than the reference (none is cut)
                s.finished_first += 1;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "call {at} ({cut:?}): the apply neither reached the cut nor ended"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lab.fake.no_interrupt();
        lab.fake.finish_running_tasks();
        let (code, out, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
        assert_eq!(
            code, 0,
            "call {at} ({cut:?}): the apply after the cut failed\n{out}\n{err}"
        );
        assert_eq!(
            end_state(&lab),
            reference,
            "call {at} ({cut:?}): the cluster differs from an uninterrupted apply\n{err}"
        );
        let (code, out, err) = pvegpu(
            &inv,
            &["plan", "-n", "pvetest", "--detailed-exitcode"],
            ROOT_TOKEN_SECRET,
        )
        .await;
        assert_eq!(code, 0, "call {at} ({cut:?}): plan after it\n{out}\n{err}");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_apply_cut_at_any_call_converges_on_the_next() {
    let lab = Lab::start().await;
    let inv = lab.inventory(TOKEN, "");
    let started = Instant::now();
    let (code, out, err) = pvegpu(&inv, APPLY, ROOT_TOKEN_SECRET).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let reference = end_state(&lab);
    let calls = lab.requests();
    assert!(calls > 10, "the apply made {calls} calls");
    eprintln!(
        "uninterrupted apply: {calls} API calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for cut in [Cut::Before, Cut::After] {
        let t = Instant::now();
        let s = sweep(cut, &reference, calls).await;
        eprintln!(
            "cut {cut:?}: {} of {} calls cut, {} runs ended before their cut; every one converged in {:.0} s",
            s.cut,
            s.calls,
            s.finished_first,
            t.elapsed().as_secs_f64()
        );
        assert!(s.cut > 0);
    }
}
