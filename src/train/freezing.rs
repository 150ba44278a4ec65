//! What trains at a step: the layer-wise schedule ([`UnfreezeSchedule`]) and the
//! encoder/decoder phases ([`TrainingMode::EncoderDecoder`]) turned into freeze flags, on top
//! of what the user froze before building the trainer.

use std::collections::HashSet;

use super::mode::{Phase, PhaseSchedule, TrainingMode, UnfreezeSchedule};
use crate::error::Result;
use crate::model::{MultiTaskModel, ENCODER_PREFIX, HEADS_PREFIX, STEMS_PREFIX};

/// Which parts train; compared between steps so that flags are set only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trainable {
    /// Per encoder layer, from the input upwards.
    layers: Vec<bool>,
    /// Heads and stems.
    heads: bool,
}

/// Applies the schedules before each step.
pub(crate) struct FreezePlan {
    unfreeze: Option<UnfreezeSchedule>,
    phases: Option<PhaseSchedule>,
    /// The encoder's layer groups (`encoder.<group>`); empty: the encoder is one layer.
    groups: Vec<String>,
    /// Parameters frozen when the trainer was built: they stay frozen.
    user_frozen: HashSet<String>,
    applied: Option<Trainable>,
}

impl FreezePlan {
    pub fn new(
        model: &MultiTaskModel,
        mode: &TrainingMode,
        unfreeze: Option<UnfreezeSchedule>,
    ) -> Self {
        let phases = match mode {
            TrainingMode::EncoderDecoder(p) => Some(*p),
            _ => None,
        };
        let user_frozen = model
            .params()
            .named_vars()
            .into_iter()
            .filter(|(n, _)| model.is_frozen(n))
            .map(|(n, _)| n)
            .collect();
        Self {
            unfreeze,
            phases,
            groups: model.encoder().layer_groups(),
            user_frozen,
            applied: None,
        }
    }

    /// What trains at global step `step` of epoch `epoch`.
    fn trainable(&self, step: u64, epoch: usize) -> Trainable {
        let layers = self.groups.len().max(1);
        let (mut on, mut heads) = match &self.unfreeze {
            Some(u) => u.trainable(epoch, layers),
            None => (vec![true; layers], true),
        };
        match self.phases.map(|p| p.phase(step, epoch)) {
            Some(Phase::Heads) => on.iter_mut().for_each(|v| *v = false),
            Some(Phase::Encoder) => heads = false,
            None => {}
        }
        Trainable { layers: on, heads }
    }

    /// Sets the freeze flags for step `step` of epoch `epoch` (nothing when no schedule is
    /// configured, so the user's own freezing is left alone).
    pub fn apply(&mut self, model: &MultiTaskModel, step: u64, epoch: usize) -> Result<()> {
        if self.unfreeze.is_none() && self.phases.is_none() {
            return Ok(());
        }
        let want = self.trainable(step, epoch);
        if self.applied.as_ref() == Some(&want) {
            return Ok(());
        }
        let encoder = format!("{ENCODER_PREFIX}.");
        let task_parts = [format!("{HEADS_PREFIX}."), format!("{STEMS_PREFIX}.")];
        for (name, _) in model.params().named_vars() {
            let trains = if let Some(rest) = name.strip_prefix(&encoder) {
                match self
                    .groups
                    .iter()
                    .position(|g| rest == g || rest.starts_with(&format!("{g}.")))
                {
                    Some(i) => want.layers[i],
                    // Outside every declared layer (or no layers declared): trains when the
                    // whole encoder does.
                    None => want.layers.iter().all(|v| *v),
                }
            } else if task_parts.iter().any(|p| name.starts_with(p)) {
                want.heads
            } else {
                true
            };
            let frozen = !trains || self.user_frozen.contains(&name);
            model.params().set_frozen(&name, frozen);
        }
        self.applied = Some(want);
        Ok(())
    }
}
