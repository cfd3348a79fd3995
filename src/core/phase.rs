//! The shape every phase has, said once: gather the facts, plan from them (pure), apply the
//! plan through the phase's executor, and prove the postconditions, among them that a fresh
//! plan is empty. The host, VM and guest phases implement [`Phase`]; `pipeline` walks a node
//! through them in order, each handing the next what it starts from.
//!
//! Adding a fourth phase: write a small struct holding what it needs (the node, its
//! connection or connector, options) and `impl Phase` for it, with `Input` the `Output` of
//! the phase before it; then, in `pipeline`, plan it after that phase with
//! `Pipeline::stage` and add its stage to `NodePlan` (state, text, JSON); in
//! `commands::apply`, run it with `Run::phase` once the phase before converged, and add its
//! postconditions to `converged_report`.

use super::check::Check;
use super::outcome::ApplyReport;
use super::plan::PhasePlan;
use super::progress::Progress;
use anyhow::Result;
use std::future::Future;

/// One phase of a node: gather -> plan -> apply -> postconditions.
pub trait Phase {
    /// What the phase before hands over (`()` for the first).
    type Input;
    /// What gather reads from the system, and the executor starts from.
    type Facts;
    type Plan: PhasePlan;
    /// What this phase hands the next one, once planned or applied.
    type Output;

    /// Read the system, once.
    fn gather(&self, input: &Self::Input) -> impl Future<Output = Result<Self::Facts>>;

    /// What to change, from the facts alone (no I/O).
    fn plan(&self, input: &Self::Input, facts: &Self::Facts) -> Result<Self::Plan>;

    /// What the next phase starts from, given this phase's plan as it is now.
    fn hand_over(&self, facts: &Self::Facts, plan: &Self::Plan) -> Self::Output;

    /// Run the plan (a plan with nothing to do changes nothing) and prove it: the report
    /// holds the steps, reboots, round trips and the postconditions, among them that a fresh
    /// plan has nothing left.
    fn apply<P: Progress>(
        &self,
        input: &Self::Input,
        facts: &Self::Facts,
        plan: &Self::Plan,
        progress: &P,
    ) -> impl Future<Output = Applied<Self::Output>>;

    /// What must hold for a plan with nothing to do, on the facts it was made from.
    fn postconditions(&self, facts: &Self::Facts, plan: &Self::Plan) -> Vec<Check>;
}

/// What a phase's executor did, and what the next phase starts from (or where it stopped).
pub struct Applied<O> {
    pub report: ApplyReport,
    pub result: Result<O>,
}

impl<O> Applied<O> {
    /// Nothing ran: only checks.
    pub fn checked(postconditions: Vec<Check>, output: O) -> Self {
        Applied {
            report: ApplyReport {
                postconditions,
                ..ApplyReport::default()
            },
            result: Ok(output),
        }
    }

    /// The executor stopped before it proved anything.
    pub fn stopped(error: anyhow::Error) -> Self {
        Applied {
            report: ApplyReport::default(),
            result: Err(error),
        }
    }
}
