//! Where a phase's plan stands, said once for every phase, so `plan`, `apply` and `verify`
//! decide on a host, VM or guest plan in the same words.

use crate::plan::Refusal;

/// The state of one phase's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanState<'a> {
    /// Known unsafe or impossible: nothing of this phase may run.
    Refused(&'a [Refusal]),
    /// An earlier phase must finish first; what it waits for.
    Waiting(&'a str),
    /// Changes to make.
    Ready,
    /// Converged.
    NothingToDo,
}

/// What every phase's plan tells about itself.
pub trait PhasePlan {
    fn state(&self) -> PlanState<'_>;
    fn render_text(&self) -> String;
}

/// The state of a plan with changes and refusals, when nothing makes it wait.
pub fn state_of<'a>(refusals: &'a [Refusal], empty: bool) -> PlanState<'a> {
    match (refusals.is_empty(), empty) {
        (false, _) => PlanState::Refused(refusals),
        (true, false) => PlanState::Ready,
        (true, true) => PlanState::NothingToDo,
    }
}

impl PlanState<'_> {
    pub fn refused(self) -> bool {
        matches!(self, PlanState::Refused(_))
    }

    pub fn nothing_to_do(self) -> bool {
        self == PlanState::NothingToDo
    }
}
