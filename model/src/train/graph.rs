//! The training step as one CUDA graph: forward, loss, backward, clip and AdamW captured once
//! and replayed for every later batch of the same shape. A step then costs one graph launch
//! instead of a few thousand kernel launches from the host, which is what bounds small models.
//!
//! What changes between steps lives in tensors the graph reads: the batch is copied into its
//! static input tensors and AdamW's step-dependent factors (learning rate, bias corrections)
//! into a small device tensor before each replay; the gradients are the graph's own buffers
//! (set to none before the capture, so that the captured backward allocates them). The first
//! step runs eagerly on the graph's stream (kernel compilation, cuBLAS workspaces and every
//! other lazy initialisation happen there, not inside the capture); the capture itself runs
//! nothing, so the second batch's step is captured and then replayed.
use tch::{Kind, Tensor};

use crate::cuda::{self, Graph};
use crate::lm::Mamba2LM;
use crate::train::adamw::AdamW;
use crate::train::step::{batch_loss, train_step, Batch, StepResult};
use crate::{Error, Result};

/// A training step captured as a CUDA graph (see the module's text).
pub struct GraphedStep {
    graph: Option<Graph>,
    inputs: Tensor,
    targets: Tensor,
    /// AdamW's factors for the step being replayed ([3] fp32, see `AdamW::advance`).
    factors: Tensor,
    kind: Kind,
    clip: f64,
    /// The captured step's outputs, rewritten by every replay.
    out: Option<StepResult>,
}

impl GraphedStep {
    pub fn new(lm: &Mamba2LM, kind: Kind, clip: f64) -> Result<GraphedStep> {
        let device = lm.device();
        Ok(GraphedStep {
            graph: Some(Graph::new(device)?),
            inputs: Tensor::zeros([0], (Kind::Int64, device)),
            targets: Tensor::zeros([0], (Kind::Int64, device)),
            factors: Tensor::zeros([3], (Kind::Float, device)),
            kind,
            clip,
            out: None,
        })
    }

    /// One training step on `batch` with learning rate `lr` (the same update as `train_step`):
    /// the first call runs it eagerly on the graph's stream, the second captures and replays
    /// it, later ones replay. Every batch must have the shape of the second one.
    pub fn step(&mut self, lm: &Mamba2LM, opt: &mut AdamW, batch: &Batch, lr: f64) -> Result<StepResult> {
        let graph = self.graph.as_mut().ok_or_else(|| Error::Device("the CUDA graph failed earlier".into()))?;
        if self.inputs.numel() == 0 {
            // Warm-up: a real step, eager, on the graph's stream.
            let (kind, clip) = (self.kind, self.clip);
            let r = graph.on_side(|| train_step(lm, opt, batch, None, kind, lr, clip, None))?;
            self.inputs = batch.inputs.copy();
            self.targets = batch.targets.copy();
            return Ok(r);
        }
        if batch.inputs.size() != self.inputs.size() || batch.targets.size() != self.targets.size() {
            return Err(Error::Device(format!(
                "a CUDA-graphed step takes batches of one shape: captured {:?}, got {:?}",
                self.inputs.size(),
                batch.inputs.size()
            )));
        }
        {
            let _guard = tch::no_grad_guard();
            self.inputs.copy_(&batch.inputs);
            self.targets.copy_(&batch.targets);
        }
        opt.advance(lr, &self.factors);
        if self.out.is_none() {
            if let Err(e) = self.capture(lm, opt) {
                self.graph = None; // its pool goes with it
                opt.step -= 1; // this step did not run
                return Err(e);
            }
        }
        let graph = self.graph.as_ref().expect("captured above");
        graph.replay()?;
        let out = self.out.as_ref().expect("captured above");
        // Copies: the next replay rewrites the graph's outputs.
        Ok(StepResult { loss: out.loss.copy(), grad_norm: out.grad_norm.copy() })
    }

    fn capture(&mut self, lm: &Mamba2LM, opt: &AdamW) -> Result<()> {
        opt.zero_grad();
        // What the warm-up left cached goes back to the device before the graph takes its own.
        cuda::empty_cache();
        let (kind, clip) = (self.kind, self.clip);
        let batch = Batch { inputs: self.inputs.shallow_clone(), targets: self.targets.shallow_clone() };
        let factors = &self.factors;
        let graph = self.graph.as_mut().expect("present");
        let out = graph.capture(|| {
            let loss = batch_loss(lm, &batch, None, kind);
            loss.backward();
            let stats = opt.step_from(factors, clip);
            StepResult { loss: loss.detach(), grad_norm: stats.grad_norm }
        })?;
        self.out = Some(out);
        Ok(())
    }
}
